"""Auto top-up: when a project's available balance falls below its threshold, one off-session card charge
fills it up to the target.

The path of one crossing:
1. on_wallet_changed (wallets.ledger) tells us, inside the transaction of every transfer, commit or
   release; for a project with auto top-up on, autotopup_check runs after that commit (never inside it).
2. autotopup_check locks the settings row, re-reads available, and writes one AutoTopUpCharge per
   crossing (unique (project, crossing), one open crossing per project): a charge in `created`, or a
   skip with its reason (the monthly cap, a charge still in flight). Committed before Stripe is called.
3. autotopup_charge_send (a Celery task after that commit, and the beat sweep for retries) calls
   Stripe outside any transaction with an Idempotency-Key built from the row, so a retry never charges
   twice. A network failure leaves the row `created` with a back-off; a decline fails it.
4. The payment_intent.succeeded webhook funds it once (a `top_up` transfer stripe → wallet under a key
   made from the PaymentIntent); payment_intent.payment_failed fails it. Three failures in a row turn
   auto top-up off and the owners are emailed.
Amounts are micro-credits; money is minor units of the currency (cents).
"""

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import F, QuerySet, Sum
from django.utils import timezone

from creditservice.lib.enqueue import enqueue_on_commit
from creditservice.lib.errors import ValidationFailed
from creditservice.lib.money import currency_minor_covering, format_amount
from creditservice.lib.paths import database_id
from wallets import ledger
from wallets.models import Account, Membership, Project, Transfer
from wallets.selectors import project_wallet_figures

from . import selectors, stripe_client
from .models import AutoTopUp, AutoTopUpCharge
from .services import EventFailed, EventNotApplicable, require_billing_enabled

log = logging.getLogger(__name__)

Status = AutoTopUpCharge.Status

# The terms a tenant agrees to before we may charge the saved card without them present. A change of the
# text is a new version; the version and the text shown are stored with each consent.
TERMS_VERSION = "2026-12-01"
TERMS_TEXT = (
    "I authorise creditservice to charge the saved card without me being present, whenever this project's "
    "available credits fall below the threshold: each charge buys the credits that bring it back up to the "
    "target, and automatic charges never exceed the monthly cap in a calendar month (UTC). Auto top-up can "
    "be turned off at any time on this page; it turns itself off after three failed charges in a row."
)

FAILURES_BEFORE_OFF = 3
# Calls to Stripe for one charge before it is failed as unreachable (visible in the admin and the portal).
MAX_ATTEMPTS = 8
FIRST_SEND_GRACE = timedelta(minutes=1)  # the task sends it first; the sweep only if that did not happen
MAX_BACKOFF = timedelta(hours=1)
SWEEP_BATCH = 500  # rows per sweep, for both the retries and the re-check of enabled projects


def stripe_idempotency_key(charge: AutoTopUpCharge) -> str:
    """One key per project and crossing; the row's creation instant keeps another database's row apart."""
    return f"v1:autotopup:{charge.project_id}:{charge.crossing}:{charge.created_at:%Y%m%dT%H%M%S%f}"


def funding_key(payment_intent_id: str) -> str:
    return f"v1:stripe:autotopup:{payment_intent_id}"


def retry_delay(attempts: int) -> timedelta:
    """Back-off after the n-th failed call: 1, 2, 4 … minutes, at most an hour."""
    return min(timedelta(minutes=2 ** max(attempts - 1, 0)), MAX_BACKOFF)


def month_start(now: datetime) -> datetime:
    """The cap's month is the calendar month in UTC."""
    return now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


# --- Which projects the ledger hook must look at (decided in memory, on the admission hot path) ---------

_CACHE_SECONDS = 10.0
_cache_lock = threading.Lock()
_enabled: tuple[float, frozenset[int]] | None = None


def enabled_project_ids() -> frozenset[int]:
    """Projects with auto top-up on, re-read at most every _CACHE_SECONDS; the beat sweep re-checks
    every enabled project too, so a crossing this cache misses in another process is still charged."""
    global _enabled
    with _cache_lock:
        if _enabled is not None and time.monotonic() - _enabled[0] < _CACHE_SECONDS:
            return _enabled[1]
    ids = frozenset(AutoTopUp.objects.filter(enabled=True).values_list("project_id", flat=True))
    with _cache_lock:
        _enabled = (time.monotonic(), ids)
    return ids


def forget_enabled_projects() -> None:
    global _enabled
    with _cache_lock:
        _enabled = None


def on_wallet_changed(project_id: int) -> None:
    """The ledger's hook, inside its transaction: only queue a look for after the commit. It never raises:
    the money of the caller's transaction must not depend on auto top-up."""
    try:
        if project_id not in enabled_project_ids():
            return
    except Exception:
        log.exception("auto top-up could not read its enabled projects; the sweep will look")
        return
    # robust: whatever goes wrong after the commit is logged and never reaches the caller.
    transaction.on_commit(lambda: autotopup_check(project_id=project_id), robust=True)


# --- Settings ---------------------------------------------------------------------------------------

def autotopup_of(project: Project) -> AutoTopUp:
    """The project's settings row, created (off) on first use."""
    row, _ = AutoTopUp.objects.get_or_create(project=project, defaults=selectors.AUTOTOPUP_DEFAULTS)
    return row


def autotopup_update(*, project: Project, actor: str, enabled: bool, threshold: int, target: int,
                     monthly_cap: int, consent: bool) -> AutoTopUp:
    """The tenant's settings. Turning it on needs a saved card and consent to the current terms (recorded
    with who, when and the text). Raises ValidationFailed with the field at fault."""
    bounds = selectors.topup_bounds()
    errors: dict[str, list[str]] = {}
    if target <= threshold:
        errors["target"] = ["the target must be above the threshold"]
    elif target - threshold < bounds.minimum:
        errors["target"] = [f"the target must be at least {format_amount(bounds.minimum)} credits above the threshold"]
    if monthly_cap < bounds.minimum:
        errors["monthly_cap"] = [f"the monthly cap must be at least {format_amount(bounds.minimum)} credits"]
    with transaction.atomic():
        row = AutoTopUp.objects.select_for_update().get(pk=autotopup_of(project).pk)
        consented = consent or (row.consent_at is not None and row.consent_terms_version == TERMS_VERSION)
        if enabled and not row.stripe_payment_method_id:
            errors.setdefault("enabled", []).append("save a card first")
        if enabled and not consented:
            errors.setdefault("consent", []).append("agree to the terms to turn auto top-up on")
        if errors:
            raise ValidationFailed(errors)
        row.threshold, row.target, row.monthly_cap = threshold, target, monthly_cap
        fields = ["threshold", "target", "monthly_cap", "enabled", "updated_at"]
        if consent:
            row.consent_by, row.consent_at = actor, timezone.now()
            row.consent_terms_version, row.consent_terms_text = TERMS_VERSION, TERMS_TEXT
            fields += ["consent_by", "consent_at", "consent_terms_version", "consent_terms_text"]
        if enabled and not row.enabled:
            # Turned back on by a person: the failures that turned it off are behind us.
            row.consecutive_failures, row.disabled_reason = 0, ""
            fields += ["consecutive_failures", "disabled_reason"]
        row.enabled = enabled
        row.save(update_fields=fields)
    forget_enabled_projects()
    if row.enabled:
        autotopup_check(project_id=project.id)
    return row


def autotopup_turn_off(*, ids: list[int], reason: str) -> int:
    """Staff's "turn off" (admin): no further automatic charges; a charge in flight still completes."""
    count = AutoTopUp.objects.filter(id__in=ids, enabled=True).update(
        enabled=False, disabled_reason=reason[:300], updated_at=timezone.now())
    forget_enabled_projects()
    return count


def autotopup_customer_ensure(*, project: Project) -> AutoTopUp:
    """The project's Stripe customer, the owner of a saved card: created once, outside any transaction,
    under a key built from the settings row (a retry or a concurrent request gets the same customer).
    Raises StripeUnavailable."""
    row = autotopup_of(project)
    if not row.stripe_customer_id:
        customer_id = stripe_client.customer_create(
            params={"name": project.name, "metadata": {"project": project.slug, "autotopup_row": str(row.id)}},
            idempotency_key=f"v1:autotopup-customer:{row.id}:{row.created_at:%Y%m%dT%H%M%S%f}",
        )
        AutoTopUp.objects.filter(id=row.id, stripe_customer_id__isnull=True).update(stripe_customer_id=customer_id)
        row.refresh_from_db()
    return row


def autotopup_consent_record(*, project: Project, actor: str) -> AutoTopUp:
    """The tenant agreed to the current terms (who, when, version and text), as on the settings page."""
    with transaction.atomic():
        row = AutoTopUp.objects.select_for_update().get(pk=autotopup_of(project).pk)
        row.consent_by, row.consent_at = actor, timezone.now()
        row.consent_terms_version, row.consent_terms_text = TERMS_VERSION, TERMS_TEXT
        row.save(update_fields=["consent_by", "consent_at", "consent_terms_version", "consent_terms_text", "updated_at"])
    return row


def autotopup_card_setup_start(*, project: Project, success_url: str, cancel_url: str, token: str) -> str:
    """"Save a card": a Stripe customer for the project (once) and a Checkout Session in setup mode.
    Returns the URL to send the tenant to. The card arrives with setup_intent.succeeded. Outside any
    transaction; raises ServiceUnavailable when Stripe cannot be reached."""
    from creditservice.lib.errors import ServiceUnavailable

    require_billing_enabled()
    try:
        row = autotopup_customer_ensure(project=project)
        metadata = {"project": project.slug, "autotopup_row": str(row.id)}
        session = stripe_client.checkout_session_create(params={
            "mode": "setup", "customer": row.stripe_customer_id, "currency": settings.STRIPE_CURRENCY.lower(),
            "metadata": metadata, "setup_intent_data": {"metadata": metadata},
            "success_url": success_url, "cancel_url": cancel_url,
        }, idempotency_key=f"v1:autotopup-setup:{row.id}:{token}")
    except stripe_client.StripeUnavailable as exc:
        log.warning("Stripe did not start a card setup for project %s: %s", project.id, exc)
        raise ServiceUnavailable("the payment provider could not be reached; try again", code="stripe_unavailable")
    return session.url


def autotopup_card_saved(*, setup_intent: dict[str, Any]) -> AutoTopUp:
    """setup_intent.succeeded: remember the card for off-session charges. Safe to repeat."""
    metadata = setup_intent.get("metadata") or {}
    row_id = database_id(str(metadata.get("autotopup_row") or ""))
    if row_id is None:
        raise EventNotApplicable("the setup intent is not an auto top-up's")
    payment_method = setup_intent.get("payment_method")
    if isinstance(payment_method, dict):
        payment_method = payment_method.get("id")
    with transaction.atomic():
        row = AutoTopUp.objects.select_for_update().filter(id=row_id, project__slug=metadata.get("project")).first()
        if row is None or not payment_method:
            raise EventFailed(f"auto top-up {row_id} of the setup intent was not found, or it names no card")
        if setup_intent.get("customer") != row.stripe_customer_id:
            raise EventFailed("the setup intent's customer is not the project's")
        if row.stripe_payment_method_id != payment_method:
            row.stripe_payment_method_id, row.card_saved_at = payment_method, timezone.now()
            row.save(update_fields=["stripe_payment_method_id", "card_saved_at", "updated_at"])
    return row


# --- A crossing --------------------------------------------------------------------------------------

def _month_charged(project_id: int, now: datetime) -> int:
    """Automatic charges this calendar month that took or may take money (failed and skipped ones did not)."""
    return AutoTopUpCharge.objects.filter(
        project_id=project_id, created_at__gte=month_start(now),
        status__in=[Status.CREATED, Status.PROCESSING, Status.SUCCEEDED],
    ).aggregate(total=Sum("amount"))["total"] or 0


def _charge_amount(row: AutoTopUp, available: int) -> tuple[int, int] | None:
    """Credits and cents of one charge: the gap to the target rounded up to whole cents, within the
    top-up bounds (a gap beyond the maximum is charged the maximum)."""
    bounds = selectors.topup_bounds()
    gap = min(max(row.target - available, bounds.minimum), bounds.maximum)
    return currency_minor_covering(gap, credits_per_unit=settings.CREDITS_PER_CURRENCY_UNIT,
                                   currency=settings.STRIPE_CURRENCY.lower())


def autotopup_check(*, project_id: int) -> AutoTopUpCharge | None:
    """Look at the project's available balance after a change: open a crossing when it fell below the
    threshold (a charge, or a skip with its reason), close the open one when it is back at or above.
    Returns the crossing opened now, if any. Must not be called inside a transaction."""
    row = AutoTopUp.objects.filter(project_id=project_id, enabled=True).first()
    if row is None:
        return None
    # The open crossing first, then available: a balance read before a concurrent check opened the
    # crossing must not close it (that check saw it below the threshold later than we did).
    open_crossing = AutoTopUpCharge.objects.filter(project_id=project_id, closed_at__isnull=True).first()
    available = project_wallet_figures(project_id).available
    if available >= row.threshold:
        if open_crossing is not None:
            with transaction.atomic(durable=True):
                _close_if_recovered(project_id)
        return None
    if open_crossing is not None:
        return None  # this crossing already has its charge or its skip
    try:
        with transaction.atomic(durable=True):
            return _open_crossing(project_id)
    except IntegrityError:
        # A concurrent check opened it first (unique crossing / one open crossing): one charge, theirs.
        return None


def _close_if_recovered(project_id: int) -> None:
    """Back at or above the threshold: the crossing is over. Under the same lock as opening one."""
    row = AutoTopUp.objects.select_for_update().filter(project_id=project_id).first()
    if row is not None and project_wallet_figures(project_id).available >= row.threshold:
        AutoTopUpCharge.objects.filter(project_id=project_id, closed_at__isnull=True).update(closed_at=timezone.now())


def _open_crossing(project_id: int) -> AutoTopUpCharge | None:
    """Lock, re-check, write: the settings row serializes a project's checks (on SQLite, the database)."""
    row = AutoTopUp.objects.select_for_update().filter(project_id=project_id, enabled=True).first()
    if row is None:
        return None
    available = project_wallet_figures(project_id).available
    charges = AutoTopUpCharge.objects.filter(project_id=project_id)
    if available >= row.threshold or charges.filter(closed_at__isnull=True).exists():
        return None
    now = timezone.now()
    last = charges.order_by("-crossing").values_list("crossing", flat=True).first() or 0
    charge = AutoTopUpCharge(project_id=project_id, crossing=last + 1, available_before=available,
                             currency=settings.STRIPE_CURRENCY.lower())
    priced = _charge_amount(row, available)
    if not selectors.billing_enabled():
        charge.status, charge.skip_reason = Status.SKIPPED, "card payments are not configured on this service"
    elif charges.filter(status__in=AutoTopUpCharge.IN_FLIGHT).exists():
        charge.status, charge.skip_reason = Status.SKIPPED, "a previous automatic charge is still in flight"
    elif priced is None:
        charge.status, charge.skip_reason = Status.SKIPPED, "the gap does not convert into an exact amount of money"
    else:
        charge.currency_amount, charge.amount = priced
        so_far = _month_charged(project_id, now)
        if so_far + charge.amount > row.monthly_cap:
            charge.status = Status.SKIPPED
            charge.skip_reason = (f"the monthly cap: {format_amount(so_far)} of {format_amount(row.monthly_cap)} "
                                  f"credits charged this month, {format_amount(charge.amount)} more would exceed it")
            charge.amount = charge.currency_amount = 0
        else:
            charge.next_attempt_at = now + FIRST_SEND_GRACE
    charge.save()
    if charge.status == Status.CREATED:
        from .tasks import autotopup_charge_send_task

        enqueue_on_commit(autotopup_charge_send_task, charge.id)
    else:
        log.info("auto top-up of project %s skipped: %s", project_id, charge.skip_reason)
    return charge


# --- Stripe ------------------------------------------------------------------------------------------

def _payment_intent_params(charge: AutoTopUpCharge, row: AutoTopUp) -> dict[str, Any]:
    metadata = {"project": row.project.slug, "autotopup_charge_row": str(charge.id), "credits": format_amount(charge.amount)}
    return {
        "amount": charge.currency_amount, "currency": charge.currency,
        "customer": row.stripe_customer_id, "payment_method": row.stripe_payment_method_id,
        "off_session": "true", "confirm": "true", "metadata": metadata,
        "description": f"Automatic top-up of {format_amount(charge.amount)} credits for {row.project.name}",
    }


def autotopup_charge_send(*, charge_id: int) -> AutoTopUpCharge:
    """Call Stripe for a created charge, outside any transaction. Safe to run twice at once: both send the
    same Idempotency-Key (Stripe answers the second with the first PaymentIntent), and the move to
    processing is a compare-and-set."""
    charge = AutoTopUpCharge.objects.select_related("project").get(id=charge_id)
    if charge.status != Status.CREATED:
        return charge
    row = AutoTopUp.objects.select_related("project").get(project_id=charge.project_id)
    AutoTopUpCharge.objects.filter(id=charge.id).update(attempts=F("attempts") + 1)
    try:
        intent = stripe_client.payment_intent_create(params=_payment_intent_params(charge, row),
                                                     idempotency_key=stripe_idempotency_key(charge))
    except stripe_client.PaymentRefused as exc:
        return autotopup_charge_fail(charge_id=charge.id, reason=f"declined: {exc}",
                                     payment_intent_id=exc.payment_intent_id)
    except stripe_client.StripeUnavailable as exc:
        return _send_failed(charge, str(exc))
    if intent.status in ("requires_payment_method", "requires_action", "canceled"):
        return autotopup_charge_fail(charge_id=charge.id, reason=f"Stripe answered {intent.status}",
                                     payment_intent_id=intent.id)
    AutoTopUpCharge.objects.filter(id=charge.id, status=Status.CREATED).update(
        status=Status.PROCESSING, stripe_payment_intent_id=intent.id, sent_at=timezone.now(), error="",
        next_attempt_at=None, updated_at=timezone.now(),
    )
    charge.refresh_from_db()
    return charge


def _send_failed(charge: AutoTopUpCharge, error: str) -> AutoTopUpCharge:
    """Stripe did not answer: retried by the sweep with back-off, failed (visibly) after MAX_ATTEMPTS."""
    charge.refresh_from_db()
    log.warning("auto top-up charge %s: Stripe not reached (attempt %s): %s", charge.id, charge.attempts, error)
    if charge.attempts >= MAX_ATTEMPTS:
        return autotopup_charge_fail(charge_id=charge.id,
                                     reason=f"Stripe could not be reached after {charge.attempts} attempts: {error}")
    AutoTopUpCharge.objects.filter(id=charge.id, status=Status.CREATED).update(
        error=error[:2000], next_attempt_at=timezone.now() + retry_delay(charge.attempts), updated_at=timezone.now())
    charge.refresh_from_db()
    return charge


def autotopup_charge_fail(*, charge_id: int, reason: str, payment_intent_id: str | None = None) -> AutoTopUpCharge:
    """A charge failed: its crossing closes (the next fall tries again), and the FAILURES_BEFORE_OFF-th
    failure in a row turns auto top-up off and tells the owners. A repeated failure is a quiet no-op."""
    with transaction.atomic():
        row = AutoTopUp.objects.select_for_update().get(
            project_id=AutoTopUpCharge.objects.values_list("project_id", flat=True).get(id=charge_id))
        charge = AutoTopUpCharge.objects.select_for_update().get(id=charge_id)
        if charge.status in (Status.FAILED, Status.SUCCEEDED, Status.SKIPPED):
            return charge
        now = timezone.now()
        charge.status, charge.error, charge.next_attempt_at = Status.FAILED, reason[:2000], None
        charge.closed_at = charge.closed_at or now
        fields = ["status", "error", "next_attempt_at", "closed_at", "updated_at"]
        if payment_intent_id and not charge.stripe_payment_intent_id:
            charge.stripe_payment_intent_id = payment_intent_id
            fields.append("stripe_payment_intent_id")
        charge.save(update_fields=fields)
        row.consecutive_failures += 1
        turned_off = row.enabled and row.consecutive_failures >= FAILURES_BEFORE_OFF
        if turned_off:
            row.enabled = False
            row.disabled_reason = f"turned off after {row.consecutive_failures} failed charges in a row (last: {reason})"[:300]
            transaction.on_commit(lambda: _tell_owners_turned_off(row), robust=True)
        row.save(update_fields=["consecutive_failures", "enabled", "disabled_reason", "updated_at"])
    if turned_off:
        forget_enabled_projects()
    log.warning("auto top-up charge %s of project %s failed: %s", charge.id, charge.project_id, reason)
    return charge


def autotopup_turn_off_after_charge_reversed(*, project_id: int, charge_id: int,
                                             how: Literal["refunded", "disputed"]) -> None:
    """A refunded or disputed (chargeback) automatic charge turns auto top-up off, in that event's
    transaction (for a refund, before its credits go): the refund would otherwise be a new crossing, and
    the card charged again at once for what the tenant just had refunded; a cardholder who disputes an
    off-session charge must not be charged off-session again. The owners are told; an owner turns it
    back on."""
    row = AutoTopUp.objects.select_for_update().filter(project_id=project_id, enabled=True).first()
    if row is None:
        return
    row.enabled = False
    row.disabled_reason = f"turned off because automatic charge {charge_id} was {how}"
    row.save(update_fields=["enabled", "disabled_reason", "updated_at"])
    transaction.on_commit(lambda: _tell_owners_turned_off(row), robust=True)
    transaction.on_commit(forget_enabled_projects)


def _tell_owners_turned_off(row: AutoTopUp) -> None:
    """After the commit: email is a network call."""
    project = Project.objects.get(id=row.project_id)
    recipients = sorted({email for email in Membership.objects.filter(
        project=project, role=Membership.Role.OWNER).values_list("user__email", flat=True) if email})
    if not recipients:
        return
    send_mail(
        f"Auto top-up of {project.name} was turned off",
        f"Auto top-up of project {project.name} ({project.slug}) {row.disabled_reason}.\n\n"
        f"No further automatic charges will be made. Check the saved card and turn auto top-up on again "
        f"in the portal: {settings.SITE_URL.rstrip('/')}/portal/{project.slug}/auto-top-up\n",
        settings.DEFAULT_FROM_EMAIL, recipients,
    )


# --- Stripe's events ---------------------------------------------------------------------------------

def locked_charge(charges: QuerySet[AutoTopUpCharge]) -> AutoTopUpCharge | None:
    """The first of `charges`, locked after its project's settings row. Every path that locks both takes
    the settings row first (autotopup_check, autotopup_charge_fail, and the events here), so two events
    about one project (a refund and a failure, a funding and a check) never wait on each other in a circle."""
    project_id = charges.values_list("project_id", flat=True).first()
    if project_id is None:
        return None
    AutoTopUp.objects.select_for_update().filter(project_id=project_id).values_list("id", flat=True).first()
    return charges.select_for_update().first()


def _locked_charge_for(payment_intent: dict[str, Any]) -> AutoTopUpCharge:
    metadata = payment_intent.get("metadata") or {}
    row_id = database_id(str(metadata.get("autotopup_charge_row") or ""))
    if row_id is None:
        raise EventNotApplicable("the payment intent is not an automatic top-up")
    charge = locked_charge(AutoTopUpCharge.objects.filter(id=row_id, project__slug=metadata.get("project")))
    if charge is None:
        raise EventFailed(f"auto top-up charge {row_id} named by {payment_intent.get('id')} was not found")
    if charge.stripe_payment_intent_id not in (None, payment_intent.get("id")):
        raise EventFailed(f"auto top-up charge {row_id} belongs to another payment intent")
    return charge


def autotopup_charge_fund(*, payment_intent: dict[str, Any]) -> AutoTopUpCharge:
    """payment_intent.succeeded: one ledger top-up stripe → wallet for the charge's credits. Safe to repeat;
    it funds even a charge given up as unreachable, because Stripe says the money was taken."""
    intent_id = payment_intent.get("id") or ""
    with transaction.atomic():
        charge = _locked_charge_for(payment_intent)
        if charge.transfer_id is not None:
            return charge
        paid = (payment_intent.get("amount_received") or payment_intent.get("amount"),
                (payment_intent.get("currency") or "").lower())
        if paid != (charge.currency_amount, charge.currency):
            raise EventFailed(f"Stripe reports {paid[0]} {paid[1]} paid, the charge expects "
                              f"{charge.currency_amount} {charge.currency}: not funded")
        transfer, _ = ledger.transfer(
            project=charge.project_id, direction="in", system_code=Account.System.STRIPE, kind=Transfer.Kind.TOP_UP,
            amount=charge.amount, idempotency_key=funding_key(intent_id), reference=intent_id,
            reason=f"Automatic top-up of {format_amount(charge.amount)} credits",
            metadata={"autotopup_charge": charge.id, "payment_intent": intent_id}, actor="stripe",
        )
        now = timezone.now()
        charge.transfer, charge.status, charge.funded_at = transfer, Status.SUCCEEDED, now
        charge.stripe_payment_intent_id, charge.closed_at = intent_id, charge.closed_at or now
        charge.next_attempt_at = None
        charge.save(update_fields=["transfer", "status", "funded_at", "stripe_payment_intent_id", "closed_at",
                                   "next_attempt_at", "updated_at"])
        AutoTopUp.objects.filter(project_id=charge.project_id).update(consecutive_failures=0)
    return charge


def autotopup_charge_payment_failed(*, payment_intent: dict[str, Any]) -> AutoTopUpCharge:
    """payment_intent.payment_failed: the charge failed (once, however often Stripe tells us)."""
    with transaction.atomic():
        charge = _locked_charge_for(payment_intent)
    error = (payment_intent.get("last_payment_error") or {}).get("message") or "the payment failed"
    return autotopup_charge_fail(charge_id=charge.id, reason=f"declined: {error}", payment_intent_id=payment_intent.get("id"))


# --- The beat sweep ----------------------------------------------------------------------------------

def autotopup_sweep() -> dict[str, int]:
    """Retry created charges whose back-off is due, then re-check every enabled project (a crossing the
    hook could not see, e.g. another process's cache). Each row on its own: one failure never stops it."""
    sent = 0
    due = AutoTopUpCharge.objects.filter(status=Status.CREATED, next_attempt_at__lte=timezone.now())
    for charge_id in due.order_by("next_attempt_at").values_list("id", flat=True)[:SWEEP_BATCH]:
        try:
            autotopup_charge_send(charge_id=charge_id)
            sent += 1
        except Exception:
            log.exception("auto top-up charge %s could not be sent", charge_id)
    opened = 0
    for project_id in AutoTopUp.objects.filter(enabled=True).order_by("project_id").values_list(
            "project_id", flat=True)[:SWEEP_BATCH]:
        try:
            opened += autotopup_check(project_id=project_id) is not None
        except Exception:
            log.exception("auto top-up of project %s could not be checked", project_id)
    return {"sent": sent, "opened": opened}
