"""Staff screens for top-ups and Stripe events: read-only; the only action is "reprocess"."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from creditservice.lib.admin import CREDITS, ReadOnlyAdmin
from creditservice.lib.money import format_currency_minor
from wallets import access

from . import autotopup, events
from .models import AutoTopUp, AutoTopUpCharge, CheckoutSession, StripeEvent

# Staff may turn a tenant's auto top-up off (never on: that needs the tenant's own consent and card).
AUTOTOPUP_TURN_OFF = access.Operation("turn a project's auto top-up off", ("payments.change_autotopup",))


class _ReadOnlyAdmin(ReadOnlyAdmin):
    show_full_result_count = False


@admin.register(CheckoutSession)
class CheckoutSessionAdmin(_ReadOnlyAdmin):
    fixed_point_fields = {"amount": CREDITS, "refunded_amount": CREDITS}
    list_display = ["id", "project", "stripe_session_id", "amount", "money", "status", "disputed", "transfer",
                    "refunded_amount", "created_by", "created_at", "funded_at"]
    list_filter = ["status", "disputed", "currency"]
    search_fields = ["stripe_session_id", "stripe_payment_intent_id", "project__slug"]
    list_select_related = ["project", "transfer"]
    raw_id_fields = ["project", "transfer"]
    date_hierarchy = "created_at"
    # Money in the currency's minor units (cents) reads as the currency amount ("25.00 USD").
    exclude = ["currency_amount", "refunded_currency_amount"]
    readonly_fields = ["money", "refunded_money"]

    @admin.display(description="charged")
    def money(self, obj: CheckoutSession) -> str:
        return f"{format_currency_minor(obj.currency_amount, obj.currency)} {obj.currency.upper()}"

    @admin.display(description="refunded money")
    def refunded_money(self, obj: CheckoutSession) -> str:
        return f"{format_currency_minor(obj.refunded_currency_amount, obj.currency)} {obj.currency.upper()}"


@admin.register(StripeEvent)
class StripeEventAdmin(_ReadOnlyAdmin):
    list_display = ["stripe_event_id", "type", "status", "attempts", "received_at", "processed_at", "short_error"]
    list_filter = ["status", "type", "livemode"]
    search_fields = ["stripe_event_id"]
    date_hierarchy = "received_at"
    actions = ["reprocess"]

    @admin.display(description="error")
    def short_error(self, obj: StripeEvent) -> str:
        return obj.error[:120]

    def has_reprocess_permission(self, request: HttpRequest) -> bool:
        return access.may(request.user, access.STRIPE_EVENT_REPROCESS)

    @admin.action(description="Reprocess the selected events (safe to repeat)", permissions=["reprocess"])
    def reprocess(self, request: HttpRequest, queryset: QuerySet[StripeEvent]) -> None:
        outcomes = events.stripe_event_reprocess(event_ids=list(queryset.values_list("id", flat=True)))
        summary = ", ".join(f"{count} {status}" for status, count in sorted(outcomes.items())) or "nothing"
        level = messages.WARNING if outcomes.get(StripeEvent.Status.FAILED) else messages.SUCCESS
        self.message_user(request, f"Reprocessed: {summary}.", level)


@admin.register(AutoTopUp)
class AutoTopUpAdmin(_ReadOnlyAdmin):
    """Read-only (view needs payments.view_autotopup); "turn off" needs payments.change_autotopup."""

    fixed_point_fields = {"threshold": CREDITS, "target": CREDITS, "monthly_cap": CREDITS}
    list_display = ["project", "enabled", "threshold", "target", "monthly_cap", "consecutive_failures",
                    "card_saved_at", "consent_by", "consent_at", "disabled_reason"]
    list_filter = ["enabled"]
    search_fields = ["project__slug", "stripe_customer_id"]
    list_select_related = ["project"]
    raw_id_fields = ["project"]
    actions = ["turn_off"]

    def has_turn_off_permission(self, request: HttpRequest) -> bool:
        return access.may(request.user, AUTOTOPUP_TURN_OFF)

    @admin.action(description="Turn auto top-up off for the selected projects", permissions=["turn_off"])
    def turn_off(self, request: HttpRequest, queryset: QuerySet[AutoTopUp]) -> None:
        count = autotopup.autotopup_turn_off(ids=list(queryset.values_list("id", flat=True)),
                                             reason=f"turned off by staff (user:{request.user.pk})")
        self.message_user(request, f"Turned off: {count}.", messages.SUCCESS)


@admin.register(AutoTopUpCharge)
class AutoTopUpChargeAdmin(_ReadOnlyAdmin):
    """Read-only: every crossing, its charge or why it was skipped, and Stripe's retries (attempts, error)."""

    fixed_point_fields = {"amount": CREDITS, "available_before": CREDITS, "refunded_amount": CREDITS}
    list_display = ["id", "project", "crossing", "status", "amount", "money", "refunded_amount", "disputed",
                    "available_before", "attempts", "next_attempt_at", "stripe_payment_intent_id", "skip_reason",
                    "short_error", "created_at"]
    list_filter = ["status", "disputed", "currency"]
    search_fields = ["stripe_payment_intent_id", "project__slug"]
    list_select_related = ["project"]
    raw_id_fields = ["project", "transfer"]
    date_hierarchy = "created_at"
    exclude = ["currency_amount", "refunded_currency_amount"]
    readonly_fields = ["money", "refunded_money"]

    @admin.display(description="charged")
    def money(self, obj: AutoTopUpCharge) -> str:
        return f"{format_currency_minor(obj.currency_amount, obj.currency or 'usd')} {obj.currency.upper()}"

    @admin.display(description="refunded money")
    def refunded_money(self, obj: AutoTopUpCharge) -> str:
        return f"{format_currency_minor(obj.refunded_currency_amount, obj.currency or 'usd')} {obj.currency.upper()}"

    @admin.display(description="error")
    def short_error(self, obj: AutoTopUpCharge) -> str:
        return obj.error[:120]
