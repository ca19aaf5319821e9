"""Staff screens for top-ups and Stripe events: read-only; the only action is "reprocess"."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from creditservice.lib.admin import CREDITS, ReadOnlyAdmin
from creditservice.lib.money import format_currency_minor
from wallets import access

from . import events
from .models import CheckoutSession, StripeEvent


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
