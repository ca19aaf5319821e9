"""Stripe webhook intake: verify, store under Stripe's event id, then apply.

The signature is checked on the raw body before anything is written. Each verified event is stored once
(its unique stripe_event_id turns a duplicate delivery into "already have it") and then applied by the
services, which are safe to run twice; so a redelivery of a failed or interrupted event, or the admin's
"reprocess" action, simply applies it again.
"""

import logging
import re
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from creditservice.lib.metrics import STRIPE_WEBHOOK_EVENTS
from creditservice.lib.text import TextError, clean_text, storable_json

from . import autotopup, autotopup_disputes, autotopup_refunds, services, stripe_client, topup_card
from .models import AutoTopUpCharge, CheckoutSession, StripeEvent

log = logging.getLogger(__name__)


def _checkout_paid(obj: dict[str, Any]) -> CheckoutSession:
    # Funded first (its own transaction); then, if the owner asked, its card is saved for automatic
    # top-ups, which reads Stripe outside any transaction.
    return topup_card.checkout_card_save(session=services.checkout_session_fund(stripe_session=obj))


def _checkout_completed(obj: dict[str, Any]) -> CheckoutSession:
    # Cards are "paid" at once; delayed methods (bank debits) complete "unpaid" and fund on async success.
    if obj.get("payment_status") in ("paid", "no_payment_required"):
        return _checkout_paid(obj)
    return services.checkout_session_await_payment(stripe_session=obj)


def _charge_refunded(obj: dict[str, Any]) -> Any:
    if autotopup_refunds.is_autotopup_payment(obj):
        return autotopup_refunds.autotopup_charge_refund(charge=obj)
    return services.checkout_session_refund(charge=obj)


def _charge_disputed(obj: dict[str, Any]) -> Any:
    # A dispute names its charge's payment intent (and may carry metadata), as a refunded charge does.
    if autotopup_refunds.is_autotopup_payment(obj):
        return autotopup_disputes.autotopup_charge_flag_dispute(dispute=obj)
    return services.checkout_session_flag_dispute(dispute=obj)


HANDLERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "checkout.session.completed": _checkout_completed,
    "checkout.session.async_payment_succeeded": _checkout_paid,
    "checkout.session.async_payment_failed": lambda obj: services.checkout_session_close(
        stripe_session=obj, status=CheckoutSession.Status.FAILED),
    "checkout.session.expired": lambda obj: services.checkout_session_close(
        stripe_session=obj, status=CheckoutSession.Status.EXPIRED),
    "charge.refunded": _charge_refunded,
    "charge.dispute.created": _charge_disputed,
    # Auto top-up: the saved card, and the off-session charges (a Checkout payment's intent is ignored).
    "setup_intent.succeeded": lambda obj: autotopup.autotopup_card_saved(setup_intent=obj),
    "payment_intent.succeeded": lambda obj: autotopup.autotopup_charge_fund(payment_intent=obj),
    "payment_intent.payment_failed": lambda obj: autotopup.autotopup_charge_payment_failed(payment_intent=obj),
}


class InvalidEvent(Exception):
    """Not a verified Stripe event: answered 400, nothing stored."""


class ProcessingFailed(Exception):
    """A stored event could not be applied for an unexpected reason: answered 500, so Stripe redelivers."""


# Stripe's event types are dotted lower-case names ("checkout.session.completed"), the longest near 60
# characters. A label value is a series of its own, so anything else is "other".
_EVENT_TYPE_LABEL = re.compile(r"\A[a-z0-9_]+(?:\.[a-z0-9_]+){1,5}\Z")
EVENT_TYPE_LABEL_MAX = 80


def event_type_label(event_type: object) -> str:
    """The event's type as the metric's `type` label: bounded, so no payload can make series up."""
    if isinstance(event_type, str) and len(event_type) <= EVENT_TYPE_LABEL_MAX and _EVENT_TYPE_LABEL.match(event_type):
        return event_type
    return "other"


def _count_delivery(event_type: object, result: str) -> None:
    STRIPE_WEBHOOK_EVENTS.labels(type=event_type_label(event_type), result=result).inc()


def stripe_webhook_handle(*, payload: bytes, signature: str | None) -> tuple[StripeEvent, bool]:
    """One delivery from Stripe: verify and store it, then apply it unless an earlier delivery did.

    Returns (event, created). Each delivery is counted once in STRIPE_WEBHOOK_EVENTS by its result
    (invalid_signature, duplicate, processed, ignored, failed), after its writes committed. Raises
    InvalidEvent (nothing stored) or ProcessingFailed (stored as failed).
    """
    try:
        event, created = stripe_event_receive(payload=payload, signature=signature)
    except InvalidEvent:
        # Unverified: its type is whatever the sender wrote, so it never names a series.
        _count_delivery(None, "invalid_signature")
        raise
    if not created and not needs_processing(event):
        _count_delivery(event.type, "duplicate")
        return event, created
    try:
        event = stripe_event_process(event=event)
    except Exception as exc:
        _count_delivery(event.type, StripeEvent.Status.FAILED)
        raise ProcessingFailed(str(exc)) from exc
    _count_delivery(event.type, event.status)
    return event, created


def stripe_event_receive(*, payload: bytes, signature: str | None) -> tuple[StripeEvent, bool]:
    """Verify and store one delivery. Returns (event, created); created is False for a duplicate delivery."""
    try:
        data = stripe_client.webhook_event(payload, signature, settings.STRIPE_WEBHOOK_SECRET)
    except stripe_client.InvalidSignature as exc:
        raise InvalidEvent(str(exc)) from None
    event_id = data.get("id") if isinstance(data, dict) else None
    if not isinstance(event_id, str) or not event_id or not isinstance(data.get("type"), str):
        raise InvalidEvent("the body is not a Stripe event (no id or type)")
    try:
        clean_text(event_id, max_length=255)  # StripeEvent.stripe_event_id
    except TextError as exc:
        raise InvalidEvent(f"the event id {exc}") from None
    # Signed and kept as sent, but for what no database can store (NUL, a lone surrogate): that was a
    # 500, and Stripe would have redelivered the event for days.
    data = storable_json(data)
    try:
        with transaction.atomic():
            event = StripeEvent.objects.create(
                stripe_event_id=event_id, type=data["type"][:100], livemode=bool(data.get("livemode")), payload=data,
            )
        return event, True
    except IntegrityError:
        # Another delivery of the same event was stored first: we already have it.
        return StripeEvent.objects.get(stripe_event_id=event_id), False


def _finish(event: StripeEvent, status: str, error: str = "") -> StripeEvent:
    now = timezone.now()
    StripeEvent.objects.filter(id=event.id).update(status=status, error=error[:5000], processed_at=now)
    event.status, event.error, event.processed_at = status, error, now
    return event


def stripe_event_process(*, event: StripeEvent) -> StripeEvent:
    """Apply one stored event. Idempotent: the services lock and re-check, the ledger keys are deterministic.

    Expected refusals end as ignored/failed with the reason in `error`; an unexpected error is stored as
    failed and raised again, so the webhook answers 500 and Stripe redelivers.
    """
    StripeEvent.objects.filter(id=event.id).update(attempts=F("attempts") + 1)
    handler = HANDLERS.get(event.type)
    if handler is None:
        return _finish(event, StripeEvent.Status.IGNORED, f"event type {event.type} is not handled")
    try:
        outcome = handler(event.data_object)
    except services.EventNotApplicable as exc:
        return _finish(event, StripeEvent.Status.IGNORED, str(exc))
    except services.EventFailed as exc:
        log.warning("Stripe event %s (%s) failed: %s", event.stripe_event_id, event.type, exc)
        return _finish(event, StripeEvent.Status.FAILED, str(exc))
    except Exception as exc:
        log.exception("Stripe event %s (%s) could not be processed", event.stripe_event_id, event.type)
        _finish(event, StripeEvent.Status.FAILED, f"{type(exc).__name__}: {exc}")
        raise
    _finish(event, StripeEvent.Status.PROCESSED)
    if isinstance(outcome, CheckoutSession | AutoTopUpCharge) and outcome.transfer_id and outcome.stripe_payment_intent_id:
        _retry_waiting_payment_events(outcome.stripe_payment_intent_id)
    return event


# Events about a payment that can arrive before the top-up is funded (Stripe does not promise order).
_PAYMENT_EVENT_TYPES = ("charge.refunded", "charge.dispute.created")


def _retry_waiting_payment_events(payment_intent_id: str) -> None:
    """A refund or dispute that failed because its top-up was not funded yet is applied now that it is."""
    waiting = StripeEvent.objects.filter(
        status=StripeEvent.Status.FAILED, type__in=_PAYMENT_EVENT_TYPES,
        payload__data__object__payment_intent=payment_intent_id,
    ).order_by("id")
    for event in waiting:
        try:
            stripe_event_process(event=event)
        except Exception:  # stored as failed with its reason; the funding itself stands
            pass


def stripe_event_reprocess(*, event_ids: list[int]) -> dict[str, int]:
    """Staff's "reprocess": apply stored events again (after fixing what made them fail). Counts by outcome."""
    outcomes: dict[str, int] = {}
    for event in StripeEvent.objects.filter(id__in=event_ids).order_by("id"):
        try:
            status = stripe_event_process(event=event).status
        except Exception:
            status = StripeEvent.Status.FAILED
        outcomes[status] = outcomes.get(status, 0) + 1
    return outcomes


def needs_processing(event: StripeEvent) -> bool:
    """A duplicate delivery is applied again only if the first did not finish (crash) or failed."""
    return event.status in (StripeEvent.Status.RECEIVED, StripeEvent.Status.FAILED)
