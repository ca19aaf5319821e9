"""Refunds of automatic top-ups: the refunded share of a charge's credits is taken back, once.

As for a Checkout top-up (services.checkout_session_refund): Stripe's charge carries the cumulative
amount_refunded, so the credits to take back are a running total and only the difference moves, under a
ledger key made from the payment intent and that total. A replayed, repeated or out-of-order refund event
never takes twice. The refund transfer names the charge, so it draws first from the purchased grant that
charge funded (wallets.ledger.grants.draw_refund). The wallet may go negative; the ledger's unfunded
hooks then start grace, as for any refund.
"""

from typing import Any

from django.db import transaction

from creditservice.lib.money import format_amount, proportional_micros
from creditservice.lib.paths import database_id
from wallets import ledger
from wallets.models import Account, Transfer

from .autotopup import autotopup_turn_off_after_charge_reversed, locked_charge
from .models import AutoTopUpCharge
from .services import EventFailed


def refund_key(payment_intent_id: str, refunded_total: int) -> str:
    """Keyed by the cumulative credits refunded (micro-credits), so one refunded total is taken once."""
    return f"v1:stripe:autotopup-refund:{payment_intent_id}:{refunded_total}"


def payment_intent_id(charge: dict[str, Any]) -> str:
    """The intent a charge or dispute names: Stripe sends its id, or the intent itself when expanded."""
    payment_intent = charge.get("payment_intent")
    if isinstance(payment_intent, dict):
        payment_intent = payment_intent.get("id")
    return payment_intent or ""


def is_autotopup_payment(charge: dict[str, Any]) -> bool:
    """Whether a charge (refund, dispute) is one of an automatic top-up: its payment intent is a charge's, or
    it carries the metadata we put on the intent (before we knew the intent's id)."""
    payment_intent = payment_intent_id(charge)
    if payment_intent and AutoTopUpCharge.objects.filter(stripe_payment_intent_id=payment_intent).exists():
        return True
    return database_id(str((charge.get("metadata") or {}).get("autotopup_charge_row") or "")) is not None


def locked_funded_charge(stripe_object: dict[str, Any], *, what: str) -> AutoTopUpCharge:
    """The automatic charge a refund or a dispute names by its payment intent, locked (in locked_charge's
    order). Not funded yet (payment_intent.succeeded may come later): EventFailed, and events.py applies
    the event again once the charge is funded."""
    payment_intent = payment_intent_id(stripe_object)
    charge = (locked_charge(AutoTopUpCharge.objects.filter(stripe_payment_intent_id=payment_intent))
              if payment_intent else None)
    if charge is None or charge.transfer_id is None:
        raise EventFailed(f"{what} of automatic top-up {payment_intent} that is not funded yet; "
                          "reprocess once it is funded")
    return charge


def autotopup_charge_refund(*, charge: dict[str, Any]) -> AutoTopUpCharge:
    """charge.refunded of an automatic top-up: take back the refunded share of its credits. Safe to repeat."""
    payment_intent = payment_intent_id(charge)
    with transaction.atomic():
        row = locked_funded_charge(charge, what="refund")
        if (charge.get("currency") or "").lower() != row.currency:
            raise EventFailed(f"refund in {charge.get('currency')}, the automatic top-up was in {row.currency}")
        refunded_minor = int(charge.get("amount_refunded") or 0)
        target = proportional_micros(row.amount, refunded_minor, row.currency_amount)
        if target <= row.refunded_amount:
            return row  # this total (or a later, larger one) was taken back already
        autotopup_turn_off_after_charge_reversed(project_id=row.project_id, charge_id=row.id, how="refunded")
        ledger.transfer(
            project=row.project_id, direction="out", system_code=Account.System.STRIPE, kind=Transfer.Kind.REFUND,
            amount=target - row.refunded_amount, idempotency_key=refund_key(payment_intent, target),
            reference=charge.get("id") or "",
            reason=f"Card refund: {format_amount(target)} of {format_amount(row.amount)} credits of an automatic "
                   "top-up taken back",
            # "autotopup_charge" names the funding transfer's grant: the refund draws from it first.
            metadata={"autotopup_charge": row.id, "payment_intent": payment_intent,
                      "refunded_currency_amount": refunded_minor},
            actor="stripe", require_funds=False,
        )
        row.refunded_amount = target
        row.refunded_currency_amount = max(refunded_minor, row.refunded_currency_amount)
        row.save(update_fields=["refunded_amount", "refunded_currency_amount", "updated_at"])
    return row
