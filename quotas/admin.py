"""Staff screens of admission control.

Quotas and the budget are edited inline on the project page. wallets/admin.py must not import this
app (dependencies point down), so this module unregisters wallets' ProjectAdmin and registers a
subclass that adds the two inlines. The periodic expiry task is edited in django-celery-beat's
"Periodic tasks" admin, which comes with that app.
"""

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from creditservice.lib.admin import CREDITS, QUANTITY, ReadableAdmin, ReadOnlyAdmin, register_constraint_messages
from wallets import access
from wallets.admin import ProjectAdmin
from wallets.models import Project

from . import selectors, services
from .errors import ReservationEnded
from .models import Budget, Quota, QuotaDefault, Reservation, ResourceType

register_constraint_messages({
    "budget_hard_limit_not_negative": "The hard limit must not be negative.",
    "budget_hard_limit_within_bound": "The hard limit is above the largest amount (10^12 credits).",
    "budget_soft_limit_within_hard": "The soft limit must not be negative nor exceed the hard limit.",
    "quota_limit_not_negative": "A quota limit must not be negative.",
    "quota_limit_within_bound": "A quota limit is at most 10^12 units.",
    "quota_default_limit_not_negative": "A default limit must not be negative.",
    "quota_default_limit_within_bound": "A default limit is at most 10^12 units.",
    "quota_used_and_reserved_within_bound": "Used and reserved must stay within 10^12 units.",
    "quota_used_plus_reserved_within_bound": "Used plus reserved must stay within 10^12 units.",
})


class QuotaDefaultForm(forms.ModelForm):
    # Limits are typed as decimals of the type's unit ("2.5") and stored as micro-units.
    limit = QUANTITY.input(help_text="In the type's unit, a decimal with at most 6 places.")

    class Meta:
        model = QuotaDefault
        fields = ["limit"]


class QuotaDefaultInline(ReadableAdmin, admin.TabularInline):
    model = QuotaDefault
    form = QuotaDefaultForm
    fixed_point_fields = {"limit": QUANTITY}
    extra = 0
    max_num = 1
    verbose_name = "default limit for projects without their own quota"


class ResourceTypeForm(forms.ModelForm):
    """The unit and the metering kind say what every quantity of the type counts (its billing unit, e.g.
    vm-hours): once prices, usage or quotas are in those units, changing either would make the next
    billing run fail every project of the type (unit_mismatch) or read old quantities in a new unit.
    Such a change is refused: add a new resource type instead."""

    class Meta:
        model = ResourceType
        fields = ["code", "display_name", "unit", "metering"]

    def clean(self):
        data = super().clean()
        changed = [name for name in ("unit", "metering") if name in self.changed_data]
        if self.instance.pk and changed:
            uses = selectors.resource_type_uses(self.instance)
            if uses:
                for name in changed:
                    self.add_error(name, f"{self.instance.code} already has {', '.join(uses)} in "
                                         f"{self.instance.billing_unit}: its {name} cannot change. "
                                         "Add a new resource type instead.")
        return data


@admin.register(ResourceType)
class ResourceTypeAdmin(admin.ModelAdmin):
    form = ResourceTypeForm
    list_display = ["code", "display_name", "unit", "metering"]
    search_fields = ["code", "display_name"]
    inlines = [QuotaDefaultInline]

    def get_readonly_fields(self, request, obj=None):
        # The code names the type in API calls and in every caller's configuration.
        return ["code"] if obj else []


class QuotaForm(forms.ModelForm):
    limit = QUANTITY.input(required=False, help_text="Empty: no limit (usage is still tracked).")

    class Meta:
        model = Quota
        fields = ["resource_type", "limit"]


class QuotaInline(ReadableAdmin, admin.TabularInline):
    model = Quota
    form = QuotaForm
    fixed_point_fields = {"limit": QUANTITY, "used": QUANTITY, "reserved": QUANTITY}
    extra = 0
    fields = ["resource_type", "limit", "used", "reserved", "updated_at"]
    # used and reserved are moved only by reservations and releases (quotas/services). A row is
    # never deleted, since pending holds point at it: an empty limit means "no limit".
    can_delete = False
    readonly_fields = ["used", "reserved", "updated_at"]


class BudgetForm(forms.ModelForm):
    hard_limit = CREDITS.input(help_text="Credits per calendar month (UTC).")
    soft_limit = CREDITS.input(required=False, help_text="Alert threshold in credits; nothing is refused at it.")

    class Meta:
        model = Budget
        fields = ["hard_limit", "soft_limit"]

    def clean(self):
        data = super().clean()
        if data.get("soft_limit") is not None and data.get("hard_limit") is not None and data["soft_limit"] > data["hard_limit"]:
            raise forms.ValidationError("The soft limit must not exceed the hard limit.")
        return data


class BudgetInline(ReadableAdmin, admin.StackedInline):
    model = Budget
    form = BudgetForm
    fixed_point_fields = {"hard_limit": CREDITS, "soft_limit": CREDITS}
    extra = 0
    max_num = 1
    can_delete = True


admin.site.unregister(Project)


@admin.register(Project)
class ProjectWithAdmissionAdmin(ProjectAdmin):
    """wallets' project admin plus quotas and the budget, on the change page only: a new project is
    created through wallets' service first (see ProjectAdmin.save_model), then given limits."""

    admission_inlines = [QuotaInline, BudgetInline]

    def get_inlines(self, request, obj):
        inlines = list(super().get_inlines(request, obj))
        return [*inlines, *self.admission_inlines] if obj is not None else inlines


@admin.register(Reservation)
class ReservationAdmin(ReadOnlyAdmin):
    fixed_point_fields = {"quantity": QUANTITY, "amount": CREDITS, "committed_amount": CREDITS}
    list_display = ["id", "project", "resource_type", "quantity", "amount", "status", "expires_at",
                    "committed_amount", "created_at"]
    list_filter = ["status", "resource_type", ("project", admin.RelatedOnlyFieldListFilter)]
    search_fields = ["project__slug", "idempotency_key"]
    list_select_related = ["project", "resource_type"]
    raw_id_fields = ["project"]
    show_full_result_count = False
    date_hierarchy = "created_at"
    actions = ["release"]
    fields = ["project", "resource_type", "quantity", "amount", "status", "expires_at", "committed_amount",
              "idempotency_scope", "idempotency_key", "request_fingerprint", "actor", "created_at", "ended_at"]

    def has_release_permission(self, request: HttpRequest) -> bool:
        return access.may(request.user, access.RESERVATION_SETTLE)

    @admin.action(description="Release the selected pending reservations", permissions=["release"])
    def release(self, request: HttpRequest, queryset: QuerySet[Reservation]) -> None:
        released = skipped = 0
        for reservation_id in queryset.filter(status=Reservation.Status.PENDING).values_list("id", flat=True):
            try:
                services.reservation_release(reservation_id=reservation_id)
                released += 1
            except ReservationEnded:  # overdue: it was expired instead; report it, do not stop the batch
                skipped += 1
        self.message_user(request, f"Released {released} reservation(s); {skipped} had expired and were expired.",
                          messages.SUCCESS)
