"""Saving the card of a normal top-up for automatic top-ups ("Save this card for automatic top-ups").

1. An owner ticks it on the top-up form: their consent to the current terms is recorded (who, when,
   version and text: the same record as on the auto top-up page), the project's Stripe customer is made
   once, and the Checkout Session (payment mode) carries `customer` and
   `payment_intent_data.setup_future_usage=off_session`. Every step commits before the next network call.
2. checkout.session.completed (paid) funds the wallet as any top-up; then checkout_card_save reads the
   PaymentIntent (outside any transaction) and saves its payment_method as the project's card, once.
Who may tick it (an owner) is the caller's check.
"""

import logging
from typing import Any

from django.db import transaction
from django.utils import timezone

from creditservice.lib.errors import ServiceUnavailable, ValidationFailed
from wallets.models import Project

from . import autotopup, services, stripe_client
from .models import AutoTopUp, CheckoutSession

log = logging.getLogger(__name__)


def checkout_session_create_saving_card(
    *, project: Project, amount: int, actor: str, idempotency_key: str, success_url: str, cancel_url: str,
    terms_version: str,
) -> CheckoutSession:
    """A top-up whose card is then saved for automatic top-ups. `terms_version` is the version of the terms
    the owner was shown: consent to older terms is refused (the text changed under them). Must not be
    called inside a transaction. Raises what services.checkout_session_create raises."""
    services.require_billing_enabled()
    if terms_version != autotopup.TERMS_VERSION:
        raise ValidationFailed({"save_card": ["the terms changed since the page was shown; read them again"]})
    services.checkout_amount_check(amount)  # a refused amount records no consent
    autotopup.autotopup_consent_record(project=project, actor=actor)
    try:
        autotopup.autotopup_customer_ensure(project=project)
    except stripe_client.StripeUnavailable as exc:
        log.warning("Stripe did not make the customer of project %s: %s", project.id, exc)
        raise ServiceUnavailable("the payment provider could not be reached; try again", code="stripe_unavailable")
    return services.checkout_session_create(
        project=project, amount=amount, actor=actor, idempotency_key=idempotency_key, success_url=success_url,
        cancel_url=cancel_url, save_card=True)


def _payment_method_id(intent: dict[str, Any]) -> str:
    payment_method = intent.get("payment_method")
    if isinstance(payment_method, dict):
        payment_method = payment_method.get("id")
    return payment_method or ""


def checkout_card_save(*, session: CheckoutSession) -> CheckoutSession:
    """After a funded top-up that asked to save its card: the PaymentIntent's card becomes the project's auto
    top-up card. Once per top-up (card_saved_at): a replayed event never puts back a card replaced since.
    Stripe is read outside any transaction; StripeUnavailable propagates, so the event is stored as failed
    and Stripe's redelivery (or a reprocess) finishes it. Raises EventFailed when the intent is not fit
    for off-session charges of the project's customer."""
    if not session.save_card or session.card_saved_at is not None or session.transfer_id is None:
        return session
    if not session.stripe_payment_intent_id:
        raise services.EventFailed(f"top-up {session.id} is paid but names no payment intent: no card saved")
    intent = stripe_client.payment_intent_retrieve(session.stripe_payment_intent_id)
    payment_method = _payment_method_id(intent)
    with transaction.atomic():
        row = AutoTopUp.objects.select_for_update().get(project_id=session.project_id)
        session = CheckoutSession.objects.select_for_update().get(id=session.id)
        if session.card_saved_at is not None:
            return session
        if not payment_method or intent.get("customer") != row.stripe_customer_id:
            raise services.EventFailed(f"payment intent {intent.get('id')} names no card of the project's customer")
        if intent.get("setup_future_usage") != "off_session":
            raise services.EventFailed(f"payment intent {intent.get('id')} did not save its card for off-session use")
        now = timezone.now()
        row.stripe_payment_method_id, row.card_saved_at = payment_method, now
        row.save(update_fields=["stripe_payment_method_id", "card_saved_at", "updated_at"])
        session.card_saved_at = now
        session.save(update_fields=["card_saved_at", "updated_at"])
    log.info("top-up %s saved its card for project %s's automatic top-ups", session.id, session.project_id)
    return session
