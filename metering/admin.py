"""Staff screens for metering. Prices: add a version, never edit one. Usage is read-only."""

from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from creditservice.lib.admin import QUANTITY, RATE, ReadableAdmin, ReadOnlyAdmin, register_constraint_messages
from creditservice.lib.enqueue import enqueue_on_commit
from creditservice.lib.money import format_rate
from quotas.models import ResourceType
from wallets import access

from . import services, tasks
from .models import MAX_PRICE_PER_SECOND_PICOS, CollectionWindow, MetricQuery, Price, UsageEvent, UsageRecord
from .pricing import price_per_matches_metering

register_constraint_messages({
    "price_not_negative": "A price must not be negative.",
    "price_within_bound": "The price is above the largest rate (10^6 credits per unit or unit-hour, that / 3600 "
                          "per unit-second).",
    "price_period_forward": "A price version must end after it starts.",
    "price_one_open_version": "Another version of this price is still open-ended: add the new version after it.",
})


class PriceVersionForm(forms.ModelForm):
    # Typed in credits with up to 12 places ("0.04"), stored as pico-credits.
    unit_price = RATE.input()

    class Meta:
        model = Price
        fields = ["resource_type", "unit_price", "per", "effective_from"]
        help_texts = {
            "unit_price": "Credits. Duration types (vm, storage, ...) are priced per unit-hour or unit-second; "
                          "counted types (egress) per unit.",
            "effective_from": "Now or later: past prices are never rewritten. The current version ends here.",
        }

    def clean_effective_from(self):
        effective_from = self.cleaned_data["effective_from"]
        # A little slack for the time the form took to fill in; anything earlier would re-price billed usage.
        if effective_from < timezone.now() - timedelta(minutes=10):
            raise forms.ValidationError("a new price cannot start in the past")
        return effective_from

    def clean(self):
        cleaned = super().clean()
        resource_type: ResourceType | None = cleaned.get("resource_type")
        per = cleaned.get("per")
        if resource_type and per and not price_per_matches_metering(per, resource_type.metering):
            self.add_error("per", f"{resource_type.code} is billed in {resource_type.billing_unit}")
        unit_price = cleaned.get("unit_price")
        if per == Price.Per.UNIT_SECOND and unit_price is not None and unit_price > MAX_PRICE_PER_SECOND_PICOS:
            self.add_error("unit_price", f"a price per unit-second is at most {format_rate(MAX_PRICE_PER_SECOND_PICOS)}")
        effective_from = cleaned.get("effective_from")
        latest = Price.objects.filter(resource_type=resource_type).order_by("-effective_from").first() if resource_type else None
        if latest and effective_from and effective_from <= latest.effective_from:
            # Checked again under a lock by the service; here to answer with a form error.
            self.add_error("effective_from", f"must be after the latest version's start, {latest.effective_from:%Y-%m-%d %H:%M}")
        return cleaned


@admin.register(Price)
class PriceAdmin(ReadableAdmin, admin.ModelAdmin):
    """Adding a price adds a version (the service closes the previous one); versions are read-only."""

    form = PriceVersionForm
    fixed_point_fields = {"unit_price": RATE}
    list_display = ["resource_type", "unit_price", "per", "effective_from", "effective_to", "created_by"]
    list_filter = ["resource_type", "per"]
    list_select_related = ["resource_type"]
    ordering = ["resource_type__code", "-effective_from"]

    def get_changeform_initial_data(self, request: HttpRequest) -> dict:
        return {**super().get_changeform_initial_data(request), "effective_from": timezone.now()}

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Price, form, change: bool) -> None:
        created = services.price_version_add(
            resource_type=obj.resource_type, unit_price=obj.unit_price, per=obj.per,
            effective_from=obj.effective_from, actor=f"user:{request.user.pk}",
        )
        obj.pk, obj.created_at = created.pk, created.created_at


class MetricQueryForm(forms.ModelForm):
    class Meta:
        model = MetricQuery
        fields = ["resource_type", "promql", "project_label", "result_unit", "enabled"]

    def clean(self):
        cleaned = super().clean()
        resource_type: ResourceType | None = cleaned.get("resource_type")
        unit = cleaned.get("result_unit")
        if resource_type and unit:
            duration = resource_type.metering == ResourceType.Metering.DURATION
            if duration == (unit == MetricQuery.ResultUnit.UNITS):
                self.add_error("result_unit", f"{resource_type.code} is billed in {resource_type.billing_unit}")
        return cleaned


@admin.register(MetricQuery)
class MetricQueryAdmin(admin.ModelAdmin):
    form = MetricQueryForm
    list_display = ["resource_type", "promql", "project_label", "result_unit", "enabled", "updated_at"]
    list_filter = ["enabled"]
    list_select_related = ["resource_type"]


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdmin):
    fixed_point_fields = {"quantity": QUANTITY}
    list_display = ["project", "resource_type", "window_start", "window_end", "quantity", "source", "updated_at"]
    list_filter = ["source", "resource_type"]
    search_fields = ["project__slug"]
    date_hierarchy = "window_start"
    raw_id_fields = ["project"]
    list_select_related = ["project", "resource_type"]
    show_full_result_count = False
    ordering = ["-window_start", "project_id"]
    fields = ["project", "resource_type", "window_start", "window_end", "quantity", "source", "source_reference",
              "created_at", "updated_at"]


@admin.register(UsageEvent)
class UsageEventAdmin(ReadOnlyAdmin):
    fixed_point_fields = {"quantity": QUANTITY}
    list_display = ["event_id", "project", "resource_type", "quantity", "timestamp", "window_start", "received_at"]
    list_filter = ["resource_type"]
    search_fields = ["event_id", "project__slug"]
    raw_id_fields = ["project"]
    list_select_related = ["project", "resource_type"]
    show_full_result_count = False
    ordering = ["-received_at"]
    fields = ["project", "event_id", "resource_type", "quantity", "timestamp", "window_start", "received_at"]


@admin.register(CollectionWindow)
class CollectionWindowAdmin(ReadOnlyAdmin):
    list_display = ["metric_query", "window_start", "status", "attempts", "records_stored", "series_refused",
                    "last_attempt_at", "retry_at", "short_error"]
    list_filter = ["status", "metric_query__resource_type"]
    list_select_related = ["metric_query__resource_type"]
    show_full_result_count = False
    actions = ["retry_now"]

    @admin.display(description="last error")
    def short_error(self, obj: CollectionWindow) -> str:
        return obj.last_error[:120]

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return access.may(request.user, access.COLLECTION_RETRY)

    @admin.action(description="Retry now (collect these windows again)", permissions=["retry"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet[CollectionWindow]) -> None:
        ids = list(queryset.values_list("id", flat=True))
        services.collection_windows_reset(window_ids=ids)
        for window_id in ids:
            # Reset above, so the periodic collection takes them anyway if the broker is down.
            enqueue_on_commit(tasks.collect_window, window_id)
        self.message_user(request, f"{len(ids)} windows queued for collection.", messages.SUCCESS)
