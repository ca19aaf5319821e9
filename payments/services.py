"""Writes of the payments app: starting a top-up, and the state changes Stripe's events cause.

Every change of a CheckoutSession is "lock, re-check, write": the row is locked, its state re-read, and a
transition that already happened is a quiet no-op. Credits move only through wallets.ledger.transfer,
under deterministic keys, so the wallet is funded once and a refund is taken back once whatever the
number and order of Stripe's deliveries.
"""

import logging
import math
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from creditservice.lib.errors import RateLimited, ServiceUnavailable, ValidationFailed
from creditservice.lib.money import credits_to_currency_minor, format_amount, proportional_micros
from creditservice.lib.paths import database_id
from wallets import ledger
from wallets.idempotency import KeyReused
from wallets.models import Account, Project, Transfer

from . import selectors, stripe_client
from .models import AutoTopUp, AutoTopUpCharge, CheckoutSession

log = logging.getLogger(__name__)

SESSION_ID_PLACEHOLDER = "{CHECKOUT_SESSION_ID}"


class EventNotApplicable(Exception):
    """The event is about something that is not one of our top-ups: stored and ignored."""


class EventFailed(Exception):
    """The event is ours but cannot be applied now: stored as failed, for staff to reprocess."""


def funding_key(stripe_session_id: str) -> str:
    """The ledger idempotency key of a top-up: one Stripe session funds a wallet once."""
    return f"v1:stripe:checkout:{stripe_session_id}"


def refund_key(stripe_session_id: str, refunded_total: int) -> str:
    """Keyed by the cumulative credits refunded, so a repeated or late refund event never takes twice."""
    return f"v1:stripe:refund:{stripe_session_id}:{refunded_total}"


def stripe_idempotency_key(session: CheckoutSession) -> str:
    """Built from our own row (id and creation instant), so a retry reuses it and another database never does."""
    return f"v1:checkout:{session.id}:{session.created_at:%Y%m%dT%H%M%S%f}"


def with_session_id_placeholder(url: str) -> str:
    """Stripe substitutes {CHECKOUT_SESSION_ID} in the success URL; the success page needs it."""
    if SESSION_ID_PLACEHOLDER in url:
        return url
    separator = "&" if urlsplit(url).query else "?"
    return f"{url}{separator}session_id={SESSION_ID_PLACEHOLDER}"


def currency_amount_for(amount: int) -> int:
    """Micro-credits → minor units of STRIPE_CURRENCY; 400 when it does not convert exactly (no rounding)."""
    currency = settings.STRIPE_CURRENCY.lower()
    minor = credits_to_currency_minor(amount, credits_per_unit=settings.CREDITS_PER_CURRENCY_UNIT, currency=currency)
    if not minor:
        raise ValidationFailed({"amount": [
            f"{format_amount(amount)} credits is not a whole amount of {currency.upper()} "
            f"(at {settings.CREDITS_PER_CURRENCY_UNIT} credits per unit)"
        ]})
    return minor


def _checkout_params(session: CheckoutSession, project: Project) -> dict[str, Any]:
    credits = format_amount(session.amount)
    metadata = {"project": project.slug, "credits": credits, "checkout_session_row": str(session.id)}
    params: dict[str, Any] = {
        "mode": "payment",
        "line_items": [{
            "quantity": 1,
            "price_data": {
                "currency": session.currency,
                "unit_amount": session.currency_amount,
                "product_data": {"name": f"{credits} credits for {project.name}"},
            },
        }],
        "client_reference_id": project.slug,
        "metadata": metadata,
        # The charge and payment intent carry the same metadata, so refunds and disputes find the top-up.
        "payment_intent_data": {"metadata": metadata},
        "success_url": session.success_url,
        "cancel_url": session.cancel_url,
    }
    if session.save_card:
        # The card is saved on the project's customer for later off-session charges (auto top-up); the
        # paid event then saves the intent's payment_method as the project's card.
        params["customer"] = AutoTopUp.objects.values_list("stripe_customer_id", flat=True).get(project=project)
        params["payment_intent_data"]["setup_future_usage"] = "off_session"
    return params


def url_origin(url: str) -> str | None:
    """scheme://host:port of an http(s) URL, lower-cased, with the default port made explicit; None when
    the URL has no host or carries user info ("https://our.site@elsewhere.example" goes to elsewhere)."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return None
    return f"{scheme}://{parts.hostname.lower()}:{port or (443 if scheme == 'https' else 80)}"


def return_origins() -> list[str]:
    """Where Stripe may send a payer back: SITE_URL's origin and those of CHECKOUT_RETURN_ORIGINS."""
    origins = [url_origin(settings.SITE_URL), *(url_origin(origin) for origin in settings.CHECKOUT_RETURN_ORIGINS)]
    return [origin for origin in origins if origin]


def return_url_allowed(url: str) -> bool:
    """A caller's success or cancel URL: after paying, the payer must not be sent to someone else's page."""
    origin = url_origin(url)
    return origin is not None and origin in return_origins()


# "Open" top-ups: the ones a payer may still pay. A funded, expired or failed one no longer counts.
_OPEN_STATUSES = (CheckoutSession.Status.PENDING, CheckoutSession.Status.OPEN)
RATE_WINDOW = timedelta(hours=1)


def _require_below_open_session_limit(project: Project) -> None:
    """At most CHECKOUT_SESSIONS_PER_PROJECT_PER_HOUR open top-ups made in the last hour per project:
    each is a call to Stripe and a row, so one key cannot flood either. Call inside the transaction that
    has locked the project row (so two requests cannot both take the last place)."""
    limit = settings.CHECKOUT_SESSIONS_PER_PROJECT_PER_HOUR
    since = timezone.now() - RATE_WINDOW
    recent = CheckoutSession.objects.filter(project=project, status__in=_OPEN_STATUSES, created_at__gte=since)
    if recent.count() < limit:
        return
    oldest = recent.order_by("created_at").values_list("created_at", flat=True).first()
    retry_after = max(1, math.ceil((oldest + RATE_WINDOW - timezone.now()).total_seconds()))
    raise RateLimited(f"at most {limit} open top-ups per project in an hour; pay or let one expire, or retry "
                      f"in {retry_after} seconds", retry_after=retry_after)


def require_billing_enabled() -> None:
    if not selectors.billing_enabled():
        raise ServiceUnavailable("card top-ups are not configured on this service", code="billing_disabled")


def checkout_amount_check(amount: int) -> int:
    """A top-up's micro-credits within the bounds and an exact amount of money: its minor units, or 400."""
    bounds = selectors.topup_bounds()
    if not bounds.minimum <= amount <= bounds.maximum:
        raise ValidationFailed({"amount": [
            f"top-ups are between {format_amount(bounds.minimum)} and {format_amount(bounds.maximum)} credits"
        ]})
    return currency_amount_for(amount)


def checkout_session_create(
    *, project: Project, amount: int, actor: str, idempotency_key: str, success_url: str, cancel_url: str,
    save_card: bool = False,
) -> CheckoutSession:
    """Start a card top-up of `amount` micro-credits: a Stripe Checkout Session the customer is sent to.

    Write-ahead: our row is committed first (status pending), Stripe is called outside any transaction
    with a key built from that row, then the row gets Stripe's session in one short statement. A call
    with the same idempotency_key returns the same top-up, and resumes one whose Stripe call failed or
    is still running elsewhere (Stripe answers a repeated key with the session it already made).
    save_card: also save the card for automatic top-ups; the caller has made the project's Stripe customer
    (payments.autotopup.autotopup_customer_ensure) and recorded the owner's consent.
    Must not be called inside a transaction. Raises ServiceUnavailable (503 billing_disabled /
    stripe_unavailable), ValidationFailed (400) or RateLimited (429: too many open top-ups this hour; a
    retry of a top-up already made is never limited).
    """
    require_billing_enabled()
    currency_amount = checkout_amount_check(amount)
    if save_card and not AutoTopUp.objects.filter(project=project, stripe_customer_id__isnull=False).exists():
        raise ValidationFailed({"save_card": ["the project has no Stripe customer to save the card on"]})
    # durable: the write-ahead row must really commit before Stripe is called, so a caller that opened a
    # transaction around this (holding locks, on SQLite the whole database, across the network) fails here.
    with transaction.atomic(durable=True):
        # The project row is the lock that serializes the limit's count and the insert.
        list(Project.objects.select_for_update().filter(id=project.id).values_list("id", flat=True))
        if not CheckoutSession.objects.filter(idempotency_key=idempotency_key).exists():
            _require_below_open_session_limit(project)
        session, created = CheckoutSession.objects.get_or_create(
            idempotency_key=idempotency_key,
            defaults={
                "project": project, "amount": amount, "currency": settings.STRIPE_CURRENCY.lower(),
                "currency_amount": currency_amount, "created_by": actor,
                "success_url": with_session_id_placeholder(success_url), "cancel_url": cancel_url,
                "save_card": save_card,
            },
        )
    if not created and (session.project_id != project.id or session.amount != amount or session.save_card != save_card):
        raise KeyReused("this idempotency key was used for another top-up")
    if session.stripe_session_id:
        return session
    # Outside any transaction: the row above is committed, and its failure note below commits on its own.
    try:
        stripe_session = stripe_client.checkout_session_create(
            params=_checkout_params(session, project), idempotency_key=stripe_idempotency_key(session),
        )
    except stripe_client.StripeUnavailable as exc:
        log.warning("Stripe refused or did not answer checkout session %s: %s", session.id, exc)
        CheckoutSession.objects.filter(id=session.id).update(error=str(exc)[:2000])
        raise ServiceUnavailable("the payment provider could not be reached; try again", code="stripe_unavailable")
    # Compare-and-set: a concurrent retry of the same key may have stored the (same) session first.
    CheckoutSession.objects.filter(id=session.id, stripe_session_id__isnull=True).update(
        stripe_session_id=stripe_session.id, url=stripe_session.url, status=CheckoutSession.Status.OPEN, error="",
    )
    session.refresh_from_db()
    return session


# --- Reactions to Stripe events --------------------------------------------------------------------

def _locked_session_for(stripe_session: dict[str, Any]) -> CheckoutSession:
    """Lock our row for a Stripe Checkout Session object (call inside transaction.atomic)."""
    stripe_session_id = stripe_session.get("id") or ""
    rows = CheckoutSession.objects.select_for_update()
    session = rows.filter(stripe_session_id=stripe_session_id).first() if stripe_session_id else None
    if session is not None:
        return session
    metadata = stripe_session.get("metadata") or {}
    row_id = database_id(str(metadata.get("checkout_session_row") or ""))
    if row_id is not None:
        # Write-ahead recovery: Stripe made the session but we crashed before storing its id.
        session = rows.filter(id=row_id, stripe_session_id__isnull=True,
                              project__slug=metadata.get("project")).first()
        if session is not None and stripe_session_id:
            session.stripe_session_id = stripe_session_id
            session.url = stripe_session.get("url") or session.url
            session.save(update_fields=["stripe_session_id", "url", "updated_at"])
            return session
        raise EventFailed(f"checkout session row {row_id} named by {stripe_session_id} was not found")
    raise EventNotApplicable(f"checkout session {stripe_session_id} is not a creditservice top-up")


def _remember_payment_intent(session: CheckoutSession, stripe_session: dict[str, Any]) -> list[str]:
    payment_intent = stripe_session.get("payment_intent")
    if isinstance(payment_intent, dict):
        payment_intent = payment_intent.get("id")
    if payment_intent and not session.stripe_payment_intent_id:
        session.stripe_payment_intent_id = payment_intent
        return ["stripe_payment_intent_id"]
    return []


def checkout_session_fund(*, stripe_session: dict[str, Any]) -> CheckoutSession:
    """The customer paid: one ledger transfer stripe → wallet for the top-up's credits. Safe to repeat."""
    with transaction.atomic():
        session = _locked_session_for(stripe_session)
        changed = _remember_payment_intent(session, stripe_session)
        if session.transfer_id is None:
            paid_total = stripe_session.get("amount_total")
            paid_currency = (stripe_session.get("currency") or "").lower()
            if (paid_total, paid_currency) != (session.currency_amount, session.currency):
                raise EventFailed(
                    f"Stripe reports {paid_total} {paid_currency} paid, the top-up expects "
                    f"{session.currency_amount} {session.currency}: not funded"
                )
            transfer, _ = ledger.transfer(
                project=session.project_id, direction="in", system_code=Account.System.STRIPE,
                kind=Transfer.Kind.TOP_UP, amount=session.amount,
                idempotency_key=funding_key(session.stripe_session_id), reference=session.stripe_session_id,
                reason=f"Card top-up of {format_amount(session.amount)} credits",
                metadata={"checkout_session": session.id, "payment_intent": session.stripe_payment_intent_id},
                actor="stripe",
            )
            session.transfer = transfer
            session.funded_at = timezone.now()
            changed += ["transfer", "funded_at"]
            if session.status != CheckoutSession.Status.REFUNDED:
                session.status = CheckoutSession.Status.FUNDED
                changed.append("status")
        if changed:
            session.save(update_fields=[*changed, "updated_at"])
    return session


def checkout_session_await_payment(*, stripe_session: dict[str, Any]) -> CheckoutSession:
    """Completed with a delayed method (bank debit): nothing is funded until async_payment_succeeded."""
    with transaction.atomic():
        session = _locked_session_for(stripe_session)
        changed = _remember_payment_intent(session, stripe_session)
        if session.status in (CheckoutSession.Status.PENDING, CheckoutSession.Status.OPEN):
            session.status = CheckoutSession.Status.PROCESSING
            changed.append("status")
        if changed:
            session.save(update_fields=[*changed, "updated_at"])
    return session


def checkout_session_close(*, stripe_session: dict[str, Any], status: str) -> CheckoutSession:
    """The payment failed or the session expired. A funded top-up keeps its status: money already moved."""
    with transaction.atomic():
        session = _locked_session_for(stripe_session)
        changed = _remember_payment_intent(session, stripe_session)
        if session.transfer_id is None and session.status != status:
            session.status = status
            changed.append("status")
        if changed:
            session.save(update_fields=[*changed, "updated_at"])
    return session


def _locked_session_for_payment(payment_intent: Any, metadata: dict[str, Any] | None) -> CheckoutSession:
    """Refunds and disputes name the payment intent; the metadata we put on it is the fallback."""
    if isinstance(payment_intent, dict):
        payment_intent = payment_intent.get("id")
    rows = CheckoutSession.objects.select_for_update()
    session = rows.filter(stripe_payment_intent_id=payment_intent).first() if payment_intent else None
    row_text = str((metadata or {}).get("checkout_session_row") or "")
    row_id = database_id(row_text)
    if session is None and row_id is not None:
        session = rows.filter(id=row_id).first()
    if session is None:
        if row_text or payment_intent:
            raise EventFailed(f"no top-up is known for payment intent {payment_intent}; reprocess once it is funded")
        raise EventNotApplicable("the charge names no payment intent")
    return session


def checkout_session_refund(*, charge: dict[str, Any]) -> CheckoutSession:
    """A (partial) refund: take back the refunded share of the credits; the wallet may go negative.

    Stripe's charge carries the cumulative amount_refunded, so the credits to take back are computed as a
    running total and only the difference moves: repeats and out-of-order refund events never double.
    """
    with transaction.atomic():
        session = _locked_session_for_payment(charge.get("payment_intent"), charge.get("metadata"))
        if session.transfer_id is None:
            raise EventFailed("refund of a top-up that has not been funded yet; reprocess once it is funded")
        if (charge.get("currency") or "").lower() != session.currency:
            raise EventFailed(f"refund in {charge.get('currency')}, the top-up was in {session.currency}")
        refunded_minor = int(charge.get("amount_refunded") or 0)
        target = proportional_micros(session.amount, refunded_minor, session.currency_amount)
        changed: list[str] = []
        if target > session.refunded_amount:
            ledger.transfer(
                project=session.project_id, direction="out", system_code=Account.System.STRIPE,
                kind=Transfer.Kind.REFUND, amount=target - session.refunded_amount,
                idempotency_key=refund_key(session.stripe_session_id, target), reference=charge.get("id") or "",
                reason=f"Card refund: {format_amount(target)} of {format_amount(session.amount)} credits taken back",
                metadata={"checkout_session": session.id, "refunded_currency_amount": refunded_minor},
                actor="stripe", require_funds=False,
            )
            session.refunded_amount = target
            session.refunded_currency_amount = max(refunded_minor, session.refunded_currency_amount)
            changed += ["refunded_amount", "refunded_currency_amount"]
        if session.refunded_amount >= session.amount and session.status != CheckoutSession.Status.REFUNDED:
            session.status = CheckoutSession.Status.REFUNDED
            changed.append("status")
        if changed:
            session.save(update_fields=[*changed, "updated_at"])
    return session


def top_up_flag_dispute(*, top_up: CheckoutSession | AutoTopUpCharge) -> bool:
    """Flag a locked top-up (Checkout or automatic) as disputed, for staff: once, so a repeated or second
    dispute changes nothing and disputed_at keeps the first. Credits stay until staff act. True if flagged now."""
    if top_up.disputed:
        return False
    top_up.disputed, top_up.disputed_at = True, timezone.now()
    top_up.save(update_fields=["disputed", "disputed_at", "updated_at"])
    return True


def checkout_session_flag_dispute(*, dispute: dict[str, Any]) -> CheckoutSession:
    """A chargeback was opened: flag the top-up for staff (admin filter "disputed"). Credits stay until staff act."""
    with transaction.atomic():
        session = _locked_session_for_payment(dispute.get("payment_intent"), dispute.get("metadata"))
        top_up_flag_dispute(top_up=session)
    log.warning("dispute %s opened on top-up %s of project %s", dispute.get("id"), session.id, session.project_id)
    return session
