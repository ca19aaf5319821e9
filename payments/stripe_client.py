"""The one module that imports `stripe`: every call to Stripe and every signature check goes through here.

Tests point STRIPE_API_BASE at a local fake of Stripe's HTTP API (payments/tests/fake_stripe.py), so the
real library, its form encoding and its headers are exercised without a request leaving the machine.
"""

import json
from dataclasses import dataclass
from typing import Any

import stripe
from django.conf import settings

# Seconds to wait for Stripe before the top-up is refused as "try again" (the library's default is 80).
REQUEST_TIMEOUT_SECONDS = 20


class StripeUnavailable(Exception):
    """Stripe could not be reached or refused the request; nothing was bought."""


class PaymentRefused(Exception):
    """Stripe answered and refused the charge (card declined, authentication required, no such card): final."""

    def __init__(self, message: str, payment_intent_id: str | None = None):
        super().__init__(message)
        self.payment_intent_id = payment_intent_id


class InvalidSignature(Exception):
    """A webhook whose Stripe-Signature does not prove it came from Stripe (or whose body is not an event)."""


@dataclass(frozen=True)
class CreatedSession:
    id: str
    url: str
    status: str
    payment_status: str
    amount_total: int | None
    currency: str


def _client() -> stripe.StripeClient:
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY,
        base_addresses={"api": settings.STRIPE_API_BASE},
        http_client=stripe.RequestsClient(timeout=REQUEST_TIMEOUT_SECONDS),
        # Safe to retry: every create carries our own idempotency key.
        max_network_retries=2,
    )


def checkout_session_create(*, params: dict[str, Any], idempotency_key: str) -> CreatedSession:
    """POST /v1/checkout/sessions with an Idempotency-Key: a retry with the same key returns the same session."""
    try:
        session = _client().v1.checkout.sessions.create(params=params, options={"idempotency_key": idempotency_key})
    except stripe.StripeError as exc:
        raise StripeUnavailable(str(exc.user_message or exc)) from exc
    return CreatedSession(
        id=session.id, url=session.url or "", status=session.status or "", payment_status=session.payment_status or "",
        amount_total=session.amount_total, currency=session.currency or "",
    )


def checkout_session_retrieve(session_id: str) -> dict[str, Any]:
    try:
        session = _client().v1.checkout.sessions.retrieve(session_id)
    except stripe.StripeError as exc:
        raise StripeUnavailable(str(exc.user_message or exc)) from exc
    return session.to_dict()


@dataclass(frozen=True)
class CreatedPaymentIntent:
    id: str
    status: str
    amount: int
    currency: str


def customer_create(*, params: dict[str, Any], idempotency_key: str) -> str:
    """POST /v1/customers: the Stripe customer a saved card belongs to. Returns its id."""
    try:
        customer = _client().v1.customers.create(params=params, options={"idempotency_key": idempotency_key})
    except stripe.StripeError as exc:
        raise StripeUnavailable(str(exc.user_message or exc)) from exc
    return customer.id


def payment_intent_create(*, params: dict[str, Any], idempotency_key: str) -> CreatedPaymentIntent:
    """POST /v1/payment_intents (off_session, confirm): one charge of a saved card per idempotency key.

    A card error or a refused request (4xx other than 429) is final: PaymentRefused. Anything else (no
    answer, 429, 5xx) is StripeUnavailable, retried later under the same key.
    """
    try:
        intent = _client().v1.payment_intents.create(params=params, options={"idempotency_key": idempotency_key})
    except stripe.CardError as exc:
        refused = getattr(exc.error, "payment_intent", None) if exc.error else None
        raise PaymentRefused(str(exc.user_message or exc), getattr(refused, "id", None)) from exc
    except stripe.InvalidRequestError as exc:
        raise PaymentRefused(str(exc.user_message or exc)) from exc
    except stripe.StripeError as exc:
        raise StripeUnavailable(str(exc.user_message or exc)) from exc
    return CreatedPaymentIntent(id=intent.id, status=intent.status or "", amount=intent.amount or 0,
                                currency=intent.currency or "")


def payment_intent_retrieve(payment_intent_id: str) -> dict[str, Any]:
    """GET /v1/payment_intents/<id>: the card (payment_method) and customer a paid Checkout used."""
    try:
        intent = _client().v1.payment_intents.retrieve(payment_intent_id)
    except stripe.StripeError as exc:
        raise StripeUnavailable(str(exc.user_message or exc)) from exc
    return intent.to_dict()


def webhook_event(payload: bytes, signature: str | None, secret: str) -> dict[str, Any]:
    """Verify the Stripe-Signature of a raw webhook body with the official check (default tolerance, 300 s).

    Returns the event as plain JSON data; raises InvalidSignature when the header is missing, malformed,
    signed with another secret, too old, or the body is not a Stripe event.
    """
    if not signature or not secret:
        raise InvalidSignature("no Stripe-Signature header")
    try:
        stripe.Webhook.construct_event(payload, signature, secret)
    except stripe.SignatureVerificationError as exc:
        raise InvalidSignature(str(exc).split("\n")[0]) from None
    except (ValueError, KeyError, IndexError) as exc:
        raise InvalidSignature(f"not a Stripe event: {exc}") from None
    # Verified: the library's Event object is a view of the same JSON; plain data is what we store.
    return json.loads(payload)
