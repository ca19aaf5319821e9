"""Disputes (chargebacks) of automatic top-ups against the local fake of Stripe: the charge is flagged for staff
once, no credits move, auto top-up is turned off, and a dispute that comes before the funding waits for it."""

import logging

import pytest
from django.core import mail

from payments.models import AutoTopUp, AutoTopUpCharge, StripeEvent
from payments.tests.test_autotopup import armed, available, spend  # noqa: F401  (armed is a fixture)
from payments.tests.test_autotopup_refunds import funded_charge, refunds
from wallets.models import Membership
from wallets.selectors import ledger_check
from wallets.tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def disputed(fake_stripe, charge: AutoTopUpCharge, dispute_id: str = "dp_test_1") -> dict:
    """charge.dispute.created as Stripe sends it: the dispute names the charge and its payment intent by id."""
    paid = fake_stripe.payment_intent_charge(charge.stripe_payment_intent_id)
    return fake_stripe.event("charge.dispute.created", {
        "id": dispute_id, "object": "dispute", "amount": paid["amount"], "currency": paid["currency"],
        "charge": paid["id"], "payment_intent": charge.stripe_payment_intent_id, "reason": "fraudulent",
        "status": "needs_response", "metadata": {},
    })


def test_a_dispute_flags_the_automatic_charge_once_and_takes_no_credits(armed, fake_stripe, project, caplog):  # noqa: F811
    charge = funded_charge(armed, fake_stripe, project)
    event = disputed(fake_stripe, charge)
    with caplog.at_level(logging.WARNING, logger="payments.autotopup_disputes"):
        response = armed.send(event)
    assert response.status_code == 200 and response.json()["status"] == "processed", response.content
    charge.refresh_from_db()
    assert charge.disputed and charge.disputed_at is not None
    first_flagged = charge.disputed_at
    assert f"dispute dp_test_1 opened on automatic top-up charge {charge.id} of project {project.id}" in caplog.text

    assert armed.send(event).json()["duplicate"]
    # The same news under another event id, and a second dispute of the same charge: the first time stays.
    assert armed.send(dict(event, id="evt_test_same_dispute_again")).json()["status"] == "processed"
    assert armed.send(disputed(fake_stripe, charge, "dp_test_2")).json()["status"] == "processed"
    charge.refresh_from_db()
    assert charge.disputed and charge.disputed_at == first_flagged
    # Staff act on a dispute: nothing is taken back automatically.
    assert available(project) == "100" and refunds(project) == []
    assert set(StripeEvent.objects.filter(type="charge.dispute.created").values_list("status", flat=True)) == {
        "processed"}
    assert ledger_check().ok


def test_a_disputed_automatic_charge_turns_auto_top_up_off_and_tells_the_owners(armed, fake_stripe, project):  # noqa: F811
    Membership.objects.create(project=project, user=UserFactory(email="owner@acme.example"), role=Membership.Role.OWNER)
    charge = funded_charge(armed, fake_stripe, project)
    mail.outbox.clear()
    assert armed.send(disputed(fake_stripe, charge)).json()["status"] == "processed"
    settings_row = AutoTopUp.objects.get(project=project)
    assert not settings_row.enabled
    assert settings_row.disabled_reason == f"turned off because automatic charge {charge.id} was disputed"
    [message] = mail.outbox
    assert message.to == ["owner@acme.example"] and "turned off" in message.subject
    # Below the threshold again: the cardholder who disputed is not charged off-session again.
    spend(project, "85", "fall-again")
    assert AutoTopUpCharge.objects.filter(project=project).count() == 1


def test_a_replayed_dispute_does_not_turn_off_what_an_owner_turned_back_on(armed, fake_stripe, project):  # noqa: F811
    charge = funded_charge(armed, fake_stripe, project)
    event = disputed(fake_stripe, charge)
    armed.send(event)
    AutoTopUp.objects.filter(project=project).update(enabled=True, disabled_reason="")
    assert armed.send(dict(event, id="evt_test_dispute_replayed")).json()["status"] == "processed"
    assert AutoTopUp.objects.get(project=project).enabled


def test_a_dispute_before_the_funding_is_applied_once_the_charge_is_funded(armed, fake_stripe, project):  # noqa: F811
    spend(project, "85", "fall")
    charge = AutoTopUpCharge.objects.get(project=project)
    early = armed.send(disputed(fake_stripe, charge))
    assert early.status_code == 200 and early.json()["status"] == "failed"
    charge.refresh_from_db()
    assert not charge.disputed and AutoTopUp.objects.get(project=project).enabled

    armed.send(fake_stripe.payment_intent_event(charge.stripe_payment_intent_id))
    # Funded, and the waiting dispute applied right after it.
    assert StripeEvent.objects.get(type="charge.dispute.created").status == "processed"
    charge.refresh_from_db()
    assert charge.disputed and charge.transfer_id is not None
    assert available(project) == "100"
    assert not AutoTopUp.objects.get(project=project).enabled
