"""Refunds of automatic top-ups against the local fake of Stripe: the refunded share of the charge's credits is
taken back once (replays, repeats and out-of-order totals never take twice), drawn from the charge's own
purchased grant, and a refund that leaves nothing available starts grace."""

import pytest
from django.core import mail

from creditservice.lib.money import credits_to_micros
from payments.models import AutoTopUp, AutoTopUpCharge, StripeEvent
from payments.tests.test_autotopup import armed, available, spend  # noqa: F401  (armed is a fixture)
from wallets.models import GrantDraw, Membership, Project, Transfer
from wallets.selectors import ledger_check
from wallets.tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def funded_charge(armed, fake_stripe, project) -> AutoTopUpCharge:  # noqa: F811
    """100 - 85 = 15 < 20: one automatic charge of 85 credits, funded by its webhook (available 100)."""
    spend(project, "85", "fall")
    charge = AutoTopUpCharge.objects.get(project=project)
    assert armed.send(fake_stripe.payment_intent_event(charge.stripe_payment_intent_id)).json()["status"] == "processed"
    charge.refresh_from_db()
    assert charge.transfer_id is not None and available(project) == "100"
    return charge


def refunded(fake_stripe, charge: AutoTopUpCharge, amount_refunded: int) -> dict:
    return fake_stripe.event("charge.refunded",
                             fake_stripe.payment_intent_charge(charge.stripe_payment_intent_id, amount_refunded))


def refunds(project) -> list[int]:
    return list(Transfer.objects.filter(project=project, kind=Transfer.Kind.REFUND).order_by("id")
                .values_list("amount", flat=True))


def test_a_full_refund_takes_the_credits_back_once_even_replayed(armed, fake_stripe, project):  # noqa: F811
    charge = funded_charge(armed, fake_stripe, project)
    event = refunded(fake_stripe, charge, 8500)
    first = armed.send(event)
    assert first.status_code == 200 and first.json()["status"] == "processed", first.content
    assert armed.send(event).json()["duplicate"]
    # The same news under another event id : still one take.
    assert armed.send(dict(event, id="evt_test_same_refund_again")).json()["status"] == "processed"
    assert available(project) == "15"
    assert refunds(project) == [credits_to_micros("85")]
    charge.refresh_from_db()
    assert (charge.refunded_amount, charge.refunded_currency_amount) == (credits_to_micros("85"), 8500)
    assert ledger_check().ok


def test_a_partial_refund_takes_the_refunded_share_and_the_rest_follows(armed, fake_stripe, project):  # noqa: F811
    charge = funded_charge(armed, fake_stripe, project)
    armed.send(refunded(fake_stripe, charge, 3000))  # $30 of $85
    assert available(project) == "70"
    armed.send(refunded(fake_stripe, charge, 8500))  # cumulative: the whole charge
    assert available(project) == "15"
    assert refunds(project) == [credits_to_micros("30"), credits_to_micros("55")]


def test_an_out_of_order_smaller_total_takes_nothing_more(armed, fake_stripe, project):  # noqa: F811
    charge = funded_charge(armed, fake_stripe, project)
    full, partial = refunded(fake_stripe, charge, 8500), refunded(fake_stripe, charge, 3000)
    armed.send(full)
    assert armed.send(partial).json()["status"] == "processed"
    assert refunds(project) == [credits_to_micros("85")] and available(project) == "15"


def test_the_refund_draws_from_the_charges_own_purchased_grant(armed, fake_stripe, project):  # noqa: F811
    charge = funded_charge(armed, fake_stripe, project)
    armed.send(refunded(fake_stripe, charge, 4000))
    [refund] = Transfer.objects.filter(project=project, kind=Transfer.Kind.REFUND)
    # The draw order alone would take the 15 left of the project's first grant before the purchase.
    draws = [(draw.grant.source_transfer_id, draw.amount) for draw in GrantDraw.objects.filter(transfer=refund)]
    assert draws == [(charge.transfer_id, credits_to_micros("40"))]


def test_a_refund_that_leaves_nothing_available_starts_grace(armed, fake_stripe, project):  # noqa: F811
    charge = funded_charge(armed, fake_stripe, project)
    AutoTopUp.objects.filter(project=project).update(enabled=False)  # no second charge to muddy the figures
    spend(project, "90", "spent")  # 10 left
    armed.send(refunded(fake_stripe, charge, 8500))  # 85 taken back: -75
    assert available(project) == "-75"
    assert Project.objects.get(id=project.id).status == "grace"


def test_a_refund_before_the_funding_is_applied_once_the_charge_is_funded(armed, fake_stripe, project):  # noqa: F811
    spend(project, "85", "fall")
    charge = AutoTopUpCharge.objects.get(project=project)
    early = armed.send(refunded(fake_stripe, charge, 8500))
    assert early.status_code == 200 and early.json()["status"] == "failed"
    assert available(project) == "15"
    armed.send(fake_stripe.payment_intent_event(charge.stripe_payment_intent_id))
    # Funded, and the waiting refund applied right after: back where it was.
    assert available(project) == "15"
    assert StripeEvent.objects.get(type="charge.refunded").status == "processed"
    assert refunds(project) == [credits_to_micros("85")]


@pytest.mark.postgres
def test_concurrent_deliveries_of_one_refund_take_once(armed, fake_stripe, project, settings):  # noqa: F811
    import threading

    from django.db import connection
    from django.test import Client

    from payments.tests.conftest import WebhookSender

    charge = funded_charge(armed, fake_stripe, project)
    # Stripe's retries and a refund.updated-style resend: the same total under eight event ids, at once.
    events = [dict(refunded(fake_stripe, charge, 8500), id=f"evt_test_parallel_{index}") for index in range(8)]
    barrier, answers = threading.Barrier(len(events)), []

    def deliver(event: dict) -> None:
        try:
            barrier.wait()
            answers.append(WebhookSender(Client()).send(event).status_code)  # a client per thread
        finally:
            connection.close()

    threads = [threading.Thread(target=deliver, args=(event,)) for event in events]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers == [200] * len(events)
    assert refunds(project) == [credits_to_micros("85")] and available(project) == "15"
    assert ledger_check().ok


def test_a_refunded_automatic_charge_turns_auto_top_up_off_instead_of_charging_again(armed, fake_stripe, project):  # noqa: F811
    Membership.objects.create(project=project, user=UserFactory(email="owner@acme.example"), role=Membership.Role.OWNER)
    charge = funded_charge(armed, fake_stripe, project)
    mail.outbox.clear()
    assert armed.send(refunded(fake_stripe, charge, 8500)).json()["status"] == "processed"
    # 15 available is below the threshold again, yet the card the tenant just had refunded is not charged.
    assert available(project) == "15"
    assert AutoTopUpCharge.objects.filter(project=project).count() == 1
    settings_row = AutoTopUp.objects.get(project=project)
    assert not settings_row.enabled and "refunded" in settings_row.disabled_reason
    [message] = mail.outbox
    assert message.to == ["owner@acme.example"] and "turned off" in message.subject
