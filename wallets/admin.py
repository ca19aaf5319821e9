"""Staff screens for the ledger. Money is read-only here: staff move credits through the
"credit / debit wallet" form, which calls the ledger like any other client. A project's status is
read-only too: it moves by the lifecycle, and staff suspend a project (with a reason) or lift their
suspension through the two actions, which need the wallets.suspend_project permission.

Every action and staff view states the permission it needs, through wallets/access.py: the API asks
the same question (a view-only staff user changes nothing, here or there). A new API key is shown once,
on the page that answers its creation, never in a cookie or the session."""

import csv
import uuid

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from creditservice.lib.admin import CREDITS, ReadOnlyAdmin, register_constraint_messages
from creditservice.lib.errors import ApiError
from creditservice.lib.money import MoneyError, format_amount, parse_amount

from . import access, services
from .auth import api_key_create, api_key_revoke, api_key_set_rate_limit
from .lifecycle import staff_suspension
from .models import Account, ApiKey, Grant, IdempotencyRecord, LedgerCheck, Membership, Project, Transfer
from .selectors import WalletFigures, wallet_figures, wallet_figures_of

register_constraint_messages({
    "project_staff_suspension_shape": "A staff suspension needs a reason, and a reason needs a staff suspension.",
    "account_balance_within_bounds": "That would take the balance outside its bounds.",
    "transfer_amount_positive": "An amount must be greater than zero.",
    "transfer_amount_within_bound": "An amount is at most 10^12 credits.",
})


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    raw_id_fields = ["user"]


class WalletAdjustmentForm(forms.Form):
    direction = forms.ChoiceField(choices=[("credit", "Credit (add credits)"), ("debit", "Debit (take credits)")])
    amount = forms.CharField(help_text="Credits, a decimal with at most 6 places, e.g. 12.5")
    reason = forms.CharField(max_length=500, widget=forms.TextInput(attrs={"size": 60}))
    # One token per rendered form: a double submit is the same request and moves credits once.
    token = forms.CharField(widget=forms.HiddenInput)

    def clean_amount(self) -> int:
        try:
            return parse_amount(self.cleaned_data["amount"])
        except MoneyError as exc:
            raise forms.ValidationError(str(exc)) from None


class StaffSuspensionForm(forms.Form):
    reason = forms.CharField(max_length=Project._meta.get_field("suspension_reason").max_length,
                             widget=forms.TextInput(attrs={"size": 60}),
                             help_text="Required (surrounding spaces are dropped). Shown to the project's members "
                                       "and sent with the project.suspended webhook.")


def _figures(project: Project) -> WalletFigures:
    """The wallet as admission sees it (a hold past its expiry is freed); the changelist reads a page at once."""
    figures = getattr(project, "wallet_figures", None)
    return figures if figures is not None else wallet_figures_of(project.wallet)


def _micros_column(attribute: str, description: str):
    def column(model_admin, obj) -> str:
        return format_amount(getattr(_figures(obj), attribute))

    column.short_description = description
    return column


class ProjectChangeList(ChangeList):
    def get_results(self, request) -> None:
        super().get_results(request)
        figures = wallet_figures([project.wallet for project in self.result_list])
        for project in self.result_list:
            project.wallet_figures = figures[project.id]


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "status", "balance", "reserved", "available", "created_at"]
    list_filter = ["status"]
    search_fields = ["slug", "name"]
    list_select_related = ["wallet"]
    inlines = [MembershipInline]
    # The status moves by the lifecycle only (each change recorded, with its webhook): staff use the
    # suspend / lift actions, never the field.
    readonly_fields = ["status", "grace_until", "suspended_by_staff", "suspension_reason", "balance", "reserved",
                       "available", "created_at", "adjust_link", "suspension_link"]
    fields = ["slug", "name", "status", "grace_until", "suspended_by_staff", "suspension_reason", "suspension_link",
              "grace_period_hours", "min_runtime_hours", "balance", "reserved", "available", "adjust_link", "created_at"]
    actions = ["adjust_wallet_action", "suspend_action", "lift_suspension_action"]

    balance = _micros_column("balance", "balance")
    reserved = _micros_column("reserved", "reserved")
    available = _micros_column("available", "available")

    def get_readonly_fields(self, request, obj=None):
        # The slug names the project in every API path and key; it is set once.
        return [*self.readonly_fields, "slug"] if obj else self.readonly_fields

    def get_changelist(self, request, **kwargs):
        return ProjectChangeList

    def has_suspend_permission(self, request: HttpRequest) -> bool:
        return access.may(request.user, access.PROJECT_SUSPEND)

    def has_move_credits_permission(self, request: HttpRequest) -> bool:
        return access.may(request.user, access.CREDITS_MOVE)

    @admin.display(description="staff suspension")
    def suspension_link(self, obj: Project) -> str:
        if not obj.pk:
            return "-"
        if obj.suspended_by_staff:
            return "Suspended by staff: lift it with the \"Lift the staff suspension\" action of the project list."
        url = reverse("admin:wallets_project_suspend", args=[obj.pk])
        return format_html('<a class="button" href="{}">Suspend project</a>', url)

    @admin.display(description="wallet")
    def adjust_link(self, obj: Project) -> str:
        if not obj.pk:
            return "-"
        url = reverse("admin:wallets_project_adjust", args=[obj.pk])
        # The statement is billing's admin view (named, not imported: billing is above wallets).
        statement = reverse("admin:billing_project_statement", args=[obj.pk])
        return format_html('<a class="button" href="{}">Credit / debit wallet</a> <a class="button" href="{}">Monthly '
                           'statement</a>', url, statement)

    def save_model(self, request, obj, form, change) -> None:
        if change:
            super().save_model(request, obj, form, change)
        else:
            # A new project gets its wallet account through the service, never a bare INSERT.
            created = services.project_create(slug=obj.slug, name=obj.name)
            obj.pk = created.pk
            obj.created_at = created.created_at

    def get_urls(self):
        return [
            path("<int:project_id>/adjust/", self.admin_site.admin_view(self.adjust_view), name="wallets_project_adjust"),
            path("<int:project_id>/suspend/", self.admin_site.admin_view(self.suspend_view), name="wallets_project_suspend"),
            *super().get_urls(),
        ]

    @admin.action(description="Credit / debit the wallet of the selected project", permissions=["move_credits"])
    def adjust_wallet_action(self, request: HttpRequest, queryset: QuerySet[Project]):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one project to credit or debit.", messages.WARNING)
            return None
        return HttpResponseRedirect(reverse("admin:wallets_project_adjust", args=[queryset.get().pk]))

    @admin.action(description="Suspend the selected project (staff; asks for a reason)", permissions=["suspend"])
    def suspend_action(self, request: HttpRequest, queryset: QuerySet[Project]):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one project to suspend.", messages.WARNING)
            return None
        return HttpResponseRedirect(reverse("admin:wallets_project_suspend", args=[queryset.get().pk]))

    @admin.action(description="Lift the staff suspension of the selected projects", permissions=["suspend"])
    def lift_suspension_action(self, request: HttpRequest, queryset: QuerySet[Project]) -> None:
        lift = staff_suspension().lift
        lifted = [project.slug for project in queryset.order_by("id")
                  if lift(project_id=project.id, actor=f"user:{request.user.pk}")]
        skipped = queryset.count() - len(lifted)
        message = f"Lifted the suspension of {', '.join(lifted) or 'no project'}."
        if skipped:
            message += f" {skipped} selected project(s) were not suspended by staff."
        self.message_user(request, message, messages.SUCCESS if lifted else messages.WARNING)

    def suspend_view(self, request: HttpRequest, project_id: int) -> HttpResponse:
        if not self.has_suspend_permission(request):
            return HttpResponse("You may not suspend projects.", status=403)
        project = get_object_or_404(Project, pk=project_id)
        form = StaffSuspensionForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                suspended = staff_suspension().suspend(project_id=project.id, reason=form.cleaned_data["reason"],
                                                       actor=f"user:{request.user.pk}")
            except ValueError as exc:
                form.add_error(None, str(exc))
            else:
                if suspended:
                    self.message_user(request, f"{project.slug} is suspended until staff lift it.", messages.SUCCESS)
                else:
                    self.message_user(request, f"{project.slug} was already suspended by staff.", messages.WARNING)
                return HttpResponseRedirect(reverse("admin:wallets_project_change", args=[project.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Suspend {project.slug}",
            "project": project,
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/wallets/suspend_project.html", context)

    def adjust_view(self, request: HttpRequest, project_id: int) -> HttpResponse:
        if not self.has_move_credits_permission(request):
            return HttpResponse("You may not move credits.", status=403)
        project = get_object_or_404(Project.objects.select_related("wallet"), pk=project_id)
        form = WalletAdjustmentForm(request.POST or None, initial={"token": uuid.uuid4().hex})
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            move = services.wallet_credit if data["direction"] == "credit" else services.wallet_debit
            try:
                move(project=project, amount=data["amount"], reason=data["reason"], actor=f"user:{request.user.pk}",
                     idempotency_key=f"v1:admin:{request.user.pk}:{data['token']}")
            except ApiError as exc:
                form.add_error(None, f"{exc.detail}")
            else:
                self.message_user(request, f"{data['direction'].title()} of {format_amount(data['amount'])} credits "
                                           f"recorded for {project.slug}.", messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:wallets_project_change", args=[project.pk]))
        context = {
            **self.admin_site.each_context(request),
            "title": f"Credit / debit wallet of {project.slug}",
            "project": project,
            "form": form,
            "opts": self.model._meta,
            "balance": format_amount(project.wallet.balance),
            "available": format_amount(wallet_figures_of(project.wallet).available),
        }
        return TemplateResponse(request, "admin/wallets/adjust_wallet.html", context)


class GrantVoidForm(forms.Form):
    reason = forms.CharField(max_length=500, widget=forms.TextInput(attrs={"size": 60}),
                             help_text="Required; recorded on the reversing transfer with your user.")


@admin.register(Grant)
class GrantAdmin(ReadOnlyAdmin):
    """Read-only; staff void a grant's unspent rest with the action (wallets.void_grant, reason required)."""

    fixed_point_fields = {"amount": CREDITS, "remaining": CREDITS}
    list_display = ["id", "wallet", "category", "amount_credits", "remaining_credits", "priority", "status",
                    "effective_at", "expires_at", "created_at"]
    list_filter = ["category", "closed_as"]
    search_fields = ["wallet__project__slug", "reason"]
    list_select_related = ["wallet"]
    raw_id_fields = ["wallet", "source_transfer", "closing_transfer"]
    show_full_result_count = False
    actions = ["void_action"]

    def has_void_permission(self, request: HttpRequest) -> bool:
        return access.may(request.user, access.GRANT_VOID)

    @admin.display(description="amount")
    def amount_credits(self, obj: Grant) -> str:
        return format_amount(obj.amount)

    @admin.display(description="remaining")
    def remaining_credits(self, obj: Grant) -> str:
        return format_amount(obj.remaining)

    @admin.display(description="status")
    def status(self, obj: Grant) -> str:
        from django.utils import timezone

        return obj.status_at(timezone.now())

    def get_urls(self):
        return [path("<int:grant_id>/void/", self.admin_site.admin_view(self.void_view), name="wallets_grant_void"),
                *super().get_urls()]

    @admin.action(description="Void the unspent rest of the selected grant (asks for a reason)", permissions=["void"])
    def void_action(self, request: HttpRequest, queryset: QuerySet[Grant]):
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one grant to void.", messages.WARNING)
            return None
        return HttpResponseRedirect(reverse("admin:wallets_grant_void", args=[queryset.get().pk]))

    def void_view(self, request: HttpRequest, grant_id: int) -> HttpResponse:
        if not self.has_void_permission(request):
            return HttpResponse("You may not void grants.", status=403)
        grant = get_object_or_404(Grant.objects.select_related("wallet__project"), pk=grant_id)
        form = GrantVoidForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                services.grant_void(grant=grant, reason=form.cleaned_data["reason"], actor=f"user:{request.user.pk}")
            except ApiError as exc:
                form.add_error(None, f"{exc.detail}")
            else:
                self.message_user(request, f"Grant {grant.pk} of {grant.wallet.project.slug} is voided.", messages.SUCCESS)
                return HttpResponseRedirect(reverse("admin:wallets_grant_changelist"))
        context = {**self.admin_site.each_context(request), "title": f"Void grant {grant.pk}", "grant": grant,
                   "remaining": format_amount(grant.remaining), "form": form, "opts": self.model._meta}
        return TemplateResponse(request, "admin/wallets/void_grant.html", context)


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    fixed_point_fields = {"balance": CREDITS, "reserved": CREDITS}
    list_display = ["__str__", "kind", "code", "project", "balance_credits", "reserved_credits", "updated_at"]
    list_filter = ["kind"]
    search_fields = ["code", "project__slug"]
    list_select_related = ["project"]

    @admin.display(description="balance (cached; system accounts: see transfers)")
    def balance_credits(self, obj: Account) -> str:
        return format_amount(obj.balance)

    @admin.display(description="reserved (cached: includes holds past expiry until the expiry task releases them)")
    def reserved_credits(self, obj: Account) -> str:
        return format_amount(obj.reserved)


@admin.register(Transfer)
class TransferAdmin(ReadOnlyAdmin):
    fixed_point_fields = {"amount": CREDITS, "wallet_balance_after": CREDITS}
    list_display = ["id", "created_at", "project", "kind", "amount", "debit_account", "credit_account",
                    "reason", "actor"]
    list_filter = ["kind", "created_at"]
    search_fields = ["project__slug", "reference", "idempotency_key", "reason"]
    date_hierarchy = "created_at"
    list_select_related = ["project", "debit_account", "credit_account"]
    show_full_result_count = False
    actions = ["export_csv"]

    def has_export_permission(self, request: HttpRequest) -> bool:
        return access.may(request.user, access.TRANSFERS_EXPORT)

    @admin.action(description="Export selected transfers as CSV", permissions=["export"])
    def export_csv(self, request: HttpRequest, queryset: QuerySet[Transfer]) -> HttpResponse:
        response = HttpResponse(content_type="text/csv")
        response["Content-Disposition"] = 'attachment; filename="transfers.csv"'
        writer = csv.writer(response)
        writer.writerow(["id", "created_at", "project", "kind", "amount", "debit_account", "credit_account",
                         "reason", "reference", "idempotency_key", "actor", "wallet_balance_after"])
        for t in queryset.select_related("project", "debit_account", "credit_account").order_by("id").iterator():
            writer.writerow([t.id, t.created_at.isoformat(), t.project.slug, t.kind, format_amount(t.amount),
                             str(t.debit_account), str(t.credit_account), t.reason, t.reference,
                             t.idempotency_key, t.actor, format_amount(t.wallet_balance_after)])
        return response


class ApiKeyForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ["name", "project", "rate_limit"]


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are revoked (the Revoke button, or the action), never deleted: every transfer a key made names it as
    its actor ("api_key:1"), and a deleted row would leave those names pointing at nothing."""

    list_display = ["name", "prefix", "project", "rate_limit", "created_at", "revoked_at"]
    list_filter = ["revoked_at"]
    search_fields = ["name", "prefix"]
    raw_id_fields = ["project"]
    actions = ["revoke"]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = ApiKeyForm
        return super().get_form(request, obj, **kwargs)

    def get_readonly_fields(self, request, obj=None):
        return ["name", "prefix", "project", "created_at", "revoked_at", "revoked_by", "revoke_button"] if obj else []

    def get_fields(self, request, obj=None):
        fields = [name for name in super().get_fields(request, obj) if name != "revoke_button"]
        return [*fields, "revoke_button"] if obj else fields

    def has_delete_permission(self, request, obj=None) -> bool:
        # Also takes the bulk "delete selected" action away; the delete page answers 403.
        return False

    @admin.display(description="revoke")
    def revoke_button(self, obj: ApiKey) -> str:
        if obj.revoked_at:
            return f"Revoked {obj.revoked_at:%Y-%m-%d %H:%M} UTC by {obj.revoked_by or 'an earlier version'}."
        url = reverse("admin:wallets_apikey_revoke", args=[obj.pk])
        return format_html('<a class="button" href="{}">Revoke key</a> '
                           '(needs the wallets.change_apikey permission; the key is refused from its next request)', url)

    def get_urls(self):
        return [path("<int:api_key_id>/revoke/", self.admin_site.admin_view(self.revoke_view),
                     name="wallets_apikey_revoke"), *super().get_urls()]

    def revoke_view(self, request: HttpRequest, api_key_id: int) -> HttpResponse:
        """GET asks to confirm; POST revokes (a link alone never revokes)."""
        if not self.has_revoke_permission(request):
            return HttpResponse("You may not revoke API keys.", status=403)
        api_key = get_object_or_404(ApiKey.objects.select_related("project"), pk=api_key_id)
        if request.method == "POST":
            if api_key_revoke(api_key_id=api_key.pk, actor=f"user:{request.user.pk}"):
                self.message_user(request, f"Revoked {api_key}: it is refused from its next request.", messages.SUCCESS)
            else:
                self.message_user(request, f"{api_key} was already revoked.", messages.WARNING)
            return HttpResponseRedirect(reverse("admin:wallets_apikey_change", args=[api_key.pk]))
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "api_key": api_key,
                   "title": f"Revoke API key {api_key.name}"}
        return TemplateResponse(request, "admin/wallets/revoke_api_key.html", context)

    def save_model(self, request, obj, form, change) -> None:
        if change:
            # Only the rate limit is editable on an existing key (get_readonly_fields).
            if "rate_limit" in form.changed_data:
                api_key_set_rate_limit(api_key=obj, rate_limit=form.cleaned_data["rate_limit"])
            return
        created, raw_key = api_key_create(name=obj.name, project=obj.project, rate_limit=obj.rate_limit)
        obj.pk = created.pk
        # Kept on this object for response_add only: never stored, never put in a message (the messages
        # cookie is signed, not encrypted) or in the session.
        obj.raw_key = raw_key

    def response_add(self, request: HttpRequest, obj: ApiKey, post_url_continue=None) -> HttpResponse:
        """The answer to the creation is the one page that shows the key."""
        raw_key = getattr(obj, "raw_key", None)
        if raw_key is None:
            return super().response_add(request, obj, post_url_continue)
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "api_key": obj,
                   "raw_key": raw_key, "title": f"API key {obj.name} created"}
        # Not cached by anyone: the admin marks its pages never_cache (Cache-Control: no-store).
        return TemplateResponse(request, "admin/wallets/api_key_created.html", context)

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return access.may(request.user, access.API_KEY_REVOKE)

    @admin.action(description="Revoke selected keys", permissions=["revoke"])
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        actor = f"user:{request.user.pk}"
        count = sum(api_key_revoke(api_key_id=key_id, actor=actor)
                    for key_id in queryset.filter(revoked_at__isnull=True).values_list("id", flat=True))
        self.message_user(request, f"Revoked {count} key(s): they are refused from their next request.")


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(ReadOnlyAdmin):
    list_display = ["scope", "key", "status", "response_status", "created_at"]
    list_filter = ["status"]
    search_fields = ["scope", "key"]
    show_full_result_count = False


@admin.register(LedgerCheck)
class LedgerCheckAdmin(ReadOnlyAdmin):
    """The results of the nightly ledger check and of `manage.py check_ledger`, newest first."""

    list_display = ["started_at", "source", "ok", "drift_count", "wallets_checked", "finished_at"]
    list_filter = ["ok", "source"]
    ordering = ["-started_at", "-id"]
    fields = ["source", "started_at", "finished_at", "ok", "wallets_checked", "drift_count", "drift_list"]
    readonly_fields = fields

    @admin.display(description="drifts")
    def drift_list(self, obj: LedgerCheck):
        if not obj.drifts:
            return "none"
        shown = format_html("<ol>{}</ol>", format_html_join("", "<li>{}</li>", ((drift,) for drift in obj.drifts)))
        more = obj.drift_count - len(obj.drifts)
        return format_html("{}<p>and {} more (run manage.py check_ledger --no-record for all)</p>", shown, more) if more > 0 else shown
