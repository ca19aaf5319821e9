"""Auto top-up against the local fake of Stripe: one charge per crossing, funded once by its webhook, within
the monthly cap, never two in flight, off after three failures in a row (owners emailed), and retried
visibly when Stripe does not answer.

Transactional tests: the check runs after the ledger's commit (on_commit), as in production.
"""

import threading
from datetime import timedelta

import pytest
from django.core import mail
from django.db import connection
from django.test import Client
from django.utils import timezone

from creditservice.lib.money import credits_to_micros, format_amount
from payments import autotopup
from payments.models import AutoTopUp, AutoTopUpCharge
from payments.tests.conftest import WebhookSender
from wallets import ledger
from wallets.models import Account, Membership, Transfer
from wallets.selectors import ledger_check
from wallets.tests.factories import ProjectFactory, UserFactory, fund

pytestmark = pytest.mark.django_db(transaction=True)

Status = AutoTopUpCharge.Status


def spend(project, credits: str, key: str) -> None:
    """A usage charge (may overdraw), as the billing run makes it; the ledger hook sees it."""
    ledger.transfer(project=project.id, direction="out", system_code=Account.System.REVENUE,
                    kind=Transfer.Kind.USAGE, amount=credits_to_micros(credits), idempotency_key=key)


def available(project) -> str:
    wallet = Account.objects.get(project=project)
    return format_amount(wallet.balance - wallet.reserved)


def save_card(project, fake, webhook: WebhookSender) -> AutoTopUp:
    """The tenant's "save a card": a setup-mode Checkout, completed on Stripe's side, told by webhook."""
    autotopup.autotopup_card_setup_start(project=project, success_url="https://example.com/ok",
                                         cancel_url="https://example.com/no", token="tok-1")
    session = fake.last_session()
    assert session["mode"] == "setup" and session["customer"].startswith("cus_")
    response = webhook.send(fake.complete_setup(session["id"]))
    assert response.status_code == 200 and response.json()["status"] == "processed", response.content
    return AutoTopUp.objects.get(project=project)


def turn_on(project, *, threshold="20", target="100", cap="1000", actor="user:1") -> AutoTopUp:
    return autotopup.autotopup_update(
        project=project, actor=actor, enabled=True, threshold=credits_to_micros(threshold),
        target=credits_to_micros(target), monthly_cap=credits_to_micros(cap), consent=True)


@pytest.fixture
def armed(fake_stripe, project, settings):
    """acme (100 credits) with a saved card and auto top-up on: below 20, fill up to 100."""
    settings.CELERY_TASK_ALWAYS_EAGER = True
    fake_stripe.deliver_on_pay = False
    webhook = WebhookSender(Client())
    save_card(project, fake_stripe, webhook)
    turn_on(project)
    autotopup.forget_enabled_projects()
    return webhook


def test_a_card_saved_by_a_setup_checkout_can_be_charged_with_recorded_consent(fake_stripe, project):
    webhook = WebhookSender(Client())
    row = save_card(project, fake_stripe, webhook)
    assert row.stripe_payment_method_id.startswith("pm_") and not row.enabled
    row = turn_on(project, actor="user:7")
    assert row.enabled and row.consent_by == "user:7" and row.consent_at is not None
    assert row.consent_terms_version == autotopup.TERMS_VERSION and row.consent_terms_text == autotopup.TERMS_TEXT
    [setup] = fake_stripe.created_sessions
    assert setup.params["mode"] == "setup" and setup.params["setup_intent_data"]["metadata"]["project"] == "acme"


def test_it_cannot_be_turned_on_without_a_card_or_consent(fake_stripe, project):
    from creditservice.lib.errors import ValidationFailed

    with pytest.raises(ValidationFailed) as refused:
        turn_on(project)
    assert "enabled" in refused.value.detail
    assert not AutoTopUp.objects.filter(project=project, enabled=True).exists()


def test_one_charge_per_crossing_under_20_parallel_commits(armed, fake_stripe, project):
    # 100 - 20 × 4.5 = 10: whichever commits cross 20 first, all twenty see it below the threshold after.
    barrier = threading.Barrier(20)
    errors = []

    def commit(index: int) -> None:
        try:
            barrier.wait()
            spend(project, "4.5", f"parallel-{index}")
        except Exception as exc:  # pragma: no cover - shown by the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=commit, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert available(project) == "10"
    # The crossing happened once; every commit after it saw the same open crossing.
    [charge] = AutoTopUpCharge.objects.filter(project=project)
    [request] = fake_stripe.created_payment_intents
    assert charge.status == Status.PROCESSING and charge.crossing == 1
    assert request.params["off_session"] == "true" and request.params["confirm"] == "true"
    assert request.idempotency_key == autotopup.stripe_idempotency_key(charge)
    assert request.params["customer"].startswith("cus_") and request.params["payment_method"].startswith("pm_")


def test_the_webhook_funds_the_gap_to_the_target_once_even_replayed(armed, fake_stripe, project):
    spend(project, "85", "below")  # 15 < 20: the gap to 100 is 85
    charge = AutoTopUpCharge.objects.get(project=project)
    assert (charge.amount, charge.currency_amount) == (credits_to_micros("85"), 8500)
    event = fake_stripe.payment_intent_event(charge.stripe_payment_intent_id)
    answers = [armed.send(event).json() for _ in range(3)]
    assert answers[0]["status"] == "processed" and answers[1]["duplicate"] and answers[2]["duplicate"]
    # Stripe may also resend the same news under a new event id: still one credit.
    armed.send(fake_stripe.payment_intent_event(charge.stripe_payment_intent_id))
    assert available(project) == "100"
    [top_up] = Transfer.objects.filter(project=project, kind=Transfer.Kind.TOP_UP)
    charge.refresh_from_db()
    assert charge.status == Status.SUCCEEDED and charge.transfer == top_up and charge.closed_at is not None
    assert ledger_check().ok


def test_a_fall_after_recovery_is_a_new_crossing_with_its_own_key(armed, fake_stripe, project):
    spend(project, "85", "first-fall")
    first = AutoTopUpCharge.objects.get(project=project)
    armed.send(fake_stripe.payment_intent_event(first.stripe_payment_intent_id))
    spend(project, "1", "still-above")  # 99: above the threshold, nothing happens
    assert AutoTopUpCharge.objects.count() == 1
    spend(project, "90", "second-fall")  # 9
    second = AutoTopUpCharge.objects.exclude(id=first.id).get()
    assert second.crossing == 2 and second.amount == credits_to_micros("91")
    keys = [request.idempotency_key for request in fake_stripe.created_payment_intents]
    assert len(keys) == 2 and len(set(keys)) == 2


def test_the_monthly_cap_skips_a_charge_and_says_why(armed, fake_stripe, project):
    autotopup.autotopup_update(project=project, actor="user:1", enabled=True, threshold=credits_to_micros("20"),
                               target=credits_to_micros("100"), monthly_cap=credits_to_micros("120"), consent=False)
    spend(project, "85", "first")  # charge of 85: within 120
    first = AutoTopUpCharge.objects.get(project=project)
    armed.send(fake_stripe.payment_intent_event(first.stripe_payment_intent_id))
    spend(project, "85", "second")  # 85 more would be 170 > 120
    skipped = AutoTopUpCharge.objects.get(crossing=2)
    assert skipped.status == Status.SKIPPED and skipped.amount == 0 and "monthly cap" in skipped.skip_reason
    assert len(fake_stripe.created_payment_intents) == 1
    spend(project, "1", "more")  # the same crossing: recorded once, not once per commit
    assert AutoTopUpCharge.objects.count() == 2


def test_no_charge_while_a_previous_one_is_in_flight(armed, fake_stripe, project):
    spend(project, "85", "fall")  # charge 1 sent, its webhook not yet arrived
    fund(project, "50", key="manual")  # a manual top-up: 65, above the threshold again
    spend(project, "50", "fall-again")  # 15: a new crossing, but charge 1 is still in flight
    second = AutoTopUpCharge.objects.get(crossing=2)
    assert second.status == Status.SKIPPED and "in flight" in second.skip_reason
    assert len(fake_stripe.created_payment_intents) == 1


def test_three_failed_charges_in_a_row_turn_it_off_and_tell_the_owners(armed, fake_stripe, project):
    owner = UserFactory(email="owner@acme.example")
    Membership.objects.create(project=project, user=owner, role=Membership.Role.OWNER)
    fake_stripe.payment_outcomes = ["declined"] * 3
    for attempt in range(3):
        spend(project, "85" if attempt == 0 else "1", f"fall-{attempt}")
    failed = list(AutoTopUpCharge.objects.order_by("crossing"))
    assert [c.status for c in failed] == [Status.FAILED] * 3 and "declined" in failed[0].error
    row = AutoTopUp.objects.get(project=project)
    assert not row.enabled and "3 failed charges" in row.disabled_reason
    [message] = mail.outbox
    assert message.to == ["owner@acme.example"] and "turned off" in message.subject
    # Stripe's payment_failed events for the same charges change nothing (not counted twice).
    armed.send(fake_stripe.payment_intent_event(failed[0].stripe_payment_intent_id, "payment_intent.payment_failed"))
    assert AutoTopUp.objects.get(project=project).consecutive_failures == 3
    spend(project, "1", "after-off")
    assert AutoTopUpCharge.objects.count() == 3 and len(fake_stripe.created_payment_intents) == 3


def test_a_stripe_outage_is_retried_by_the_sweep_under_the_same_key(armed, fake_stripe, project):
    fake_stripe.fail_next = [(500, "Stripe is down")]
    spend(project, "85", "fall")
    charge = AutoTopUpCharge.objects.get(project=project)
    assert charge.status == Status.CREATED and charge.attempts == 1 and "down" in charge.error
    assert charge.next_attempt_at > timezone.now()
    assert autotopup.autotopup_sweep()["sent"] == 0  # not due yet
    AutoTopUpCharge.objects.filter(id=charge.id).update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert autotopup.autotopup_sweep()["sent"] == 1
    charge.refresh_from_db()
    assert charge.status == Status.PROCESSING and charge.attempts == 2
    first, second = fake_stripe.created_payment_intents
    assert first.idempotency_key == second.idempotency_key
    armed.send(fake_stripe.payment_intent_event(charge.stripe_payment_intent_id))
    assert available(project) == "100"


def test_a_checkout_payment_intent_is_not_an_automatic_top_up(armed, fake_stripe, project):
    event = fake_stripe.event("payment_intent.succeeded", {
        "id": "pi_checkout", "object": "payment_intent", "amount": 2500, "currency": "usd",
        "metadata": {"project": "acme", "checkout_session_row": "1"}})
    assert armed.send(event).json()["status"] == "ignored"


def test_the_sweep_finds_a_crossing_the_hook_did_not_see(fake_stripe, settings):
    project = ProjectFactory(slug="quiet", balance="100")
    webhook = WebhookSender(Client())
    save_card(project, fake_stripe, webhook)
    autotopup.autotopup_update(project=project, actor="user:1", enabled=False, threshold=credits_to_micros("20"),
                               target=credits_to_micros("100"), monthly_cap=credits_to_micros("500"), consent=True)
    spend(project, "90", "unseen")  # off: nothing
    AutoTopUp.objects.filter(project=project).update(enabled=True)  # turned on elsewhere; this process's cache is stale
    assert autotopup.autotopup_sweep()["opened"] == 1
    assert AutoTopUpCharge.objects.get(project=project).amount == credits_to_micros("90")


def test_the_sweep_is_on_the_beat_schedule_every_minute():
    from django_celery_beat.models import PeriodicTask

    from creditservice.celery import app

    task = PeriodicTask.objects.get(task="payments.tasks.autotopup_sweep")
    assert task.enabled and (task.interval.every, task.interval.period) == (1, "minutes")
    app.loader.import_default_modules()  # what a worker does at start: autodiscovery finds payments.tasks
    assert "payments.tasks.autotopup_sweep" in app.tasks and "payments.tasks.autotopup_charge_send" in app.tasks
