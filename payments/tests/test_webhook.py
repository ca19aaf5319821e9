"""POST /stripe/webhook: only signed events count, each is stored once, and a wallet is funded exactly once."""

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from django.test import Client

from creditservice.lib.money import credits_to_micros
from payments import services
from payments.models import CheckoutSession, StripeEvent
from payments.tests.conftest import WEBHOOK
from payments.tests.signing import sign_payload, signed_body
from wallets.models import Account, Transfer
from wallets.selectors import ledger_check, system_account_balance


def balance(project) -> str:
    from creditservice.lib.money import format_amount

    return format_amount(Account.objects.get(project=project).balance)


@pytest.fixture
def top_up(fake_stripe, project):
    """An open 25-credit top-up of project acme (100 credits), and its session on the fake's side."""
    fake_stripe.deliver_on_pay = False
    row = services.checkout_session_create(
        project=project, amount=credits_to_micros("25"), actor="user:1", idempotency_key="t-1",
        success_url="https://example.com/ok", cancel_url="https://example.com/no",
    )
    return row


def paid(fake, row, payment_status="paid") -> dict:
    """Stripe's session object after the customer paid (delayed methods complete "unpaid")."""
    fake.delayed_payment = payment_status != "paid"
    fake.pay(row.stripe_session_id)
    return fake.sessions[row.stripe_session_id]


def completed(fake, row, payment_status="paid") -> dict:
    return fake.event("checkout.session.completed", paid(fake, row, payment_status))


def top_ups(project) -> list[Transfer]:
    return list(Transfer.objects.filter(project=project, kind=Transfer.Kind.TOP_UP))


# --- signatures --------------------------------------------------------------------------------

def test_a_signed_completed_event_funds_the_wallet(webhook, fake_stripe, top_up, project):
    response = webhook.send(completed(fake_stripe, top_up))
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "processed"
    assert balance(project) == "125"
    row = CheckoutSession.objects.get()
    assert row.status == CheckoutSession.Status.FUNDED and row.funded_at is not None
    [transfer] = top_ups(project)
    assert row.transfer == transfer
    assert transfer.idempotency_key == f"v1:stripe:checkout:{row.stripe_session_id}"
    assert transfer.reference == row.stripe_session_id and transfer.actor == "stripe"
    assert transfer.debit_account_id == Account.objects.get(code="stripe").id
    assert system_account_balance("stripe") == -25_000_000
    assert row.stripe_payment_intent_id == fake_stripe.sessions[row.stripe_session_id]["payment_intent"]
    assert ledger_check().ok


def test_a_tampered_body_is_refused_and_nothing_is_stored(fake_stripe, top_up, project, client):
    payload, signature = signed_body(completed(fake_stripe, top_up))
    tampered = payload.replace(b'"amount_total":2500', b'"amount_total":250000')
    assert tampered != payload
    response = client.post(WEBHOOK, tampered, content_type="application/json", HTTP_STRIPE_SIGNATURE=signature)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_signature"
    assert not StripeEvent.objects.exists()
    assert balance(project) == "100"


def test_a_body_signed_with_another_secret_is_refused(webhook, fake_stripe, top_up, project):
    response = webhook.send(completed(fake_stripe, top_up), secret="whsec_someone_else")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_signature"
    assert not StripeEvent.objects.exists()
    assert balance(project) == "100"


def test_a_stale_signature_is_refused(webhook, fake_stripe, top_up, project):
    # Stripe's library accepts 300 s by default; an attacker replaying an old delivery is older than that.
    response = webhook.send(completed(fake_stripe, top_up), timestamp=int(time.time()) - 301)
    assert response.status_code == 400
    assert "tolerance" in response.json()["detail"]
    assert not StripeEvent.objects.exists()
    assert balance(project) == "100"


def test_a_recent_signature_within_the_tolerance_is_accepted(webhook, fake_stripe, top_up, project):
    response = webhook.send(completed(fake_stripe, top_up), timestamp=int(time.time()) - 240)
    assert response.status_code == 200
    assert balance(project) == "125"


@pytest.mark.parametrize("header", [None, "", "garbage", "t=abc,v1=00", "t=1700000000"])
def test_a_missing_or_malformed_signature_is_refused(fake_stripe, top_up, project, client, header):
    payload, _ = signed_body(completed(fake_stripe, top_up))
    extra = {} if header is None else {"HTTP_STRIPE_SIGNATURE": header}
    response = client.post(WEBHOOK, payload, content_type="application/json", **extra)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_signature"
    assert not StripeEvent.objects.exists()
    assert balance(project) == "100"


def test_a_signed_body_that_is_not_an_event_is_refused(fake_stripe, client, db):
    payload = b'{"hello": "world"}'
    response = client.post(WEBHOOK, payload, content_type="application/json",
                           HTTP_STRIPE_SIGNATURE=sign_payload(payload, fake_stripe.webhook_secret))
    assert response.status_code == 400
    assert not StripeEvent.objects.exists()


def test_without_a_webhook_secret_deliveries_are_refused_for_later(fake_stripe, top_up, project, client, settings):
    settings.STRIPE_WEBHOOK_SECRET = ""
    payload, signature = signed_body(completed(fake_stripe, top_up))
    response = client.post(WEBHOOK, payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=signature)
    assert response.status_code == 503
    assert response.json()["error"] == "billing_disabled"
    assert not StripeEvent.objects.exists()


def test_the_webhook_answers_only_post(webhook, db):
    assert webhook.client.get(WEBHOOK).status_code == 405


# --- exactly once ------------------------------------------------------------------------------

def test_the_same_event_five_times_funds_once_and_is_stored_once(webhook, fake_stripe, top_up, project):
    event = completed(fake_stripe, top_up)
    answers = [webhook.send(event) for _ in range(5)]
    assert [a.status_code for a in answers] == [200] * 5
    assert [a.json()["duplicate"] for a in answers] == [False, True, True, True, True]
    assert StripeEvent.objects.count() == 1
    assert len(top_ups(project)) == 1
    assert balance(project) == "125"


def test_completed_and_async_succeeded_for_one_session_fund_once(webhook, fake_stripe, top_up, project):
    session = paid(fake_stripe, top_up)
    assert webhook.send(fake_stripe.event("checkout.session.completed", session)).status_code == 200
    assert webhook.send(fake_stripe.event("checkout.session.async_payment_succeeded", session)).status_code == 200
    assert StripeEvent.objects.count() == 2
    assert set(StripeEvent.objects.values_list("status", flat=True)) == {"processed"}
    assert len(top_ups(project)) == 1
    assert balance(project) == "125"


def test_events_out_of_order_fund_once_and_end_funded(webhook, fake_stripe, top_up, project):
    unpaid = dict(paid(fake_stripe, top_up, payment_status="unpaid"))
    settled = dict(unpaid, payment_status="paid")
    webhook.send(fake_stripe.event("checkout.session.async_payment_succeeded", settled))
    assert balance(project) == "125"
    # The earlier "completed, unpaid" arrives late: it must not put the session back to waiting.
    webhook.send(fake_stripe.event("checkout.session.completed", unpaid))
    row = CheckoutSession.objects.get()
    assert row.status == CheckoutSession.Status.FUNDED
    assert len(top_ups(project)) == 1
    assert balance(project) == "125"


def test_a_delayed_payment_waits_for_async_success(webhook, fake_stripe, top_up, project):
    webhook.send(completed(fake_stripe, top_up, payment_status="unpaid"))
    row = CheckoutSession.objects.get()
    assert row.status == CheckoutSession.Status.PROCESSING and not row.funded
    assert balance(project) == "100"

    fake_stripe.webhook_url = "unused"
    session = fake_stripe.sessions[row.stripe_session_id]
    webhook.send(fake_stripe.event("checkout.session.async_payment_succeeded", dict(session, payment_status="paid")))
    row.refresh_from_db()
    assert row.status == CheckoutSession.Status.FUNDED
    assert balance(project) == "125"


def test_a_failed_delayed_payment_funds_nothing(webhook, fake_stripe, top_up, project):
    event = completed(fake_stripe, top_up, payment_status="unpaid")
    webhook.send(event)
    webhook.send(fake_stripe.event("checkout.session.async_payment_failed", event["data"]["object"]))
    row = CheckoutSession.objects.get()
    assert row.status == CheckoutSession.Status.FAILED and not row.funded
    assert balance(project) == "100"
    assert not top_ups(project)


def test_an_expired_session_is_marked_expired(webhook, fake_stripe, top_up, project):
    session = dict(fake_stripe.sessions[top_up.stripe_session_id], status="expired")
    webhook.send(fake_stripe.event("checkout.session.expired", session))
    assert CheckoutSession.objects.get().status == CheckoutSession.Status.EXPIRED
    assert balance(project) == "100"


def test_a_paid_amount_that_differs_from_the_top_up_funds_nothing_and_fails_visibly(webhook, fake_stripe, top_up,
                                                                                     project):
    session = dict(paid(fake_stripe, top_up), amount_total=99)
    response = webhook.send(fake_stripe.event("checkout.session.completed", session))
    assert response.status_code == 200
    event = StripeEvent.objects.get()
    assert event.status == StripeEvent.Status.FAILED and "not funded" in event.error
    assert balance(project) == "100"


def test_a_session_that_is_not_ours_is_stored_and_ignored(webhook, fake_stripe, db):
    foreign = {"id": "cs_test_foreign", "object": "checkout.session", "payment_status": "paid",
               "amount_total": 500, "currency": "usd", "metadata": {}}
    response = webhook.send(fake_stripe.event("checkout.session.completed", foreign))
    assert response.status_code == 200
    assert StripeEvent.objects.get().status == StripeEvent.Status.IGNORED
    assert not Transfer.objects.filter(kind=Transfer.Kind.TOP_UP).exists()


def test_a_session_whose_id_we_never_stored_is_recovered_from_its_metadata(webhook, fake_stripe, top_up, project):
    # Write-ahead: Stripe made the session, but the process died before our row got its id.
    stripe_id = top_up.stripe_session_id
    CheckoutSession.objects.filter(id=top_up.id).update(stripe_session_id=None, status="pending")
    fake_stripe.webhook_url = "unused"
    webhook.send(completed(fake_stripe, top_up))
    row = CheckoutSession.objects.get()
    assert row.stripe_session_id == stripe_id and row.status == CheckoutSession.Status.FUNDED
    assert balance(project) == "125"


def test_an_unknown_event_type_is_stored_and_ignored(webhook, fake_stripe, db):
    response = webhook.send(fake_stripe.event("customer.created", {"id": "cus_1", "object": "customer"}))
    assert response.status_code == 200
    event = StripeEvent.objects.get()
    assert (event.type, event.status) == ("customer.created", StripeEvent.Status.IGNORED)
    assert event.payload["data"]["object"]["id"] == "cus_1"


# --- refunds and disputes ----------------------------------------------------------------------

def refunded(fake, row, amount_refunded: int) -> dict:
    return fake.event("charge.refunded", fake.charge(row.stripe_session_id, amount_refunded=amount_refunded))


def test_a_partial_then_full_refund_takes_back_the_refunded_share(webhook, fake_stripe, top_up, project):
    webhook.send(completed(fake_stripe, top_up))
    assert balance(project) == "125"

    webhook.send(refunded(fake_stripe, top_up, 1000))  # $10 of $25
    assert balance(project) == "115"
    row = CheckoutSession.objects.get()
    assert (row.refunded_amount, row.refunded_currency_amount, row.status) == (10_000_000, 1000, "funded")

    webhook.send(refunded(fake_stripe, top_up, 2500))  # the rest: cumulative $25
    assert balance(project) == "100"
    row.refresh_from_db()
    assert row.status == CheckoutSession.Status.REFUNDED and row.refunded_amount == row.amount
    refunds = Transfer.objects.filter(project=project, kind=Transfer.Kind.REFUND).order_by("id")
    assert [t.amount for t in refunds] == [10_000_000, 15_000_000]
    assert ledger_check().ok


def test_a_repeated_or_late_refund_event_never_takes_twice(webhook, fake_stripe, top_up, project):
    webhook.send(completed(fake_stripe, top_up))
    partial = refunded(fake_stripe, top_up, 1000)
    full = refunded(fake_stripe, top_up, 2500)
    webhook.send(full)
    webhook.send(full)
    webhook.send(partial)  # older news arriving late
    webhook.send(dict(partial, id="evt_test_other_delivery_same_refund"))
    assert balance(project) == "100"
    assert Transfer.objects.filter(kind=Transfer.Kind.REFUND).count() == 1


def test_a_refund_may_take_the_wallet_below_zero(webhook, fake_stripe, top_up, project):
    from wallets.services import wallet_debit

    webhook.send(completed(fake_stripe, top_up))
    wallet_debit(project=project, amount=credits_to_micros("120"), reason="spent", idempotency_key="spend",
                 actor="system")
    webhook.send(refunded(fake_stripe, top_up, 2500))
    assert balance(project) == "-20"


def test_a_refund_that_arrives_before_the_funding_is_applied_once_the_top_up_is_funded(webhook, fake_stripe, top_up,
                                                                                       project):
    session = paid(fake_stripe, top_up)
    response = webhook.send(refunded(fake_stripe, top_up, 1000))
    assert response.status_code == 200
    assert StripeEvent.objects.get().status == StripeEvent.Status.FAILED
    assert balance(project) == "100"

    webhook.send(fake_stripe.event("checkout.session.completed", session))
    assert balance(project) == "115"
    assert set(StripeEvent.objects.values_list("status", flat=True)) == {"processed"}


def dispute_of(fake_stripe, top_up) -> dict:
    """The dispute Stripe sends for the paid top-up's charge."""
    charge = fake_stripe.charge(top_up.stripe_session_id)
    return {"id": "dp_test_1", "object": "dispute", "amount": 2500, "currency": "usd", "charge": charge["id"],
            "payment_intent": charge["payment_intent"], "reason": "fraudulent", "status": "needs_response"}


def test_a_dispute_flags_the_top_up_for_staff(webhook, fake_stripe, top_up, project):
    webhook.send(completed(fake_stripe, top_up))
    dispute = dispute_of(fake_stripe, top_up)
    webhook.send(fake_stripe.event("charge.dispute.created", dispute))
    row = CheckoutSession.objects.get()
    assert row.disputed and row.disputed_at is not None
    assert CheckoutSession.objects.filter(disputed=True).count() == 1
    assert balance(project) == "125"


def test_a_repeated_dispute_keeps_the_first_flag(webhook, fake_stripe, top_up, project):
    webhook.send(completed(fake_stripe, top_up))
    dispute = dispute_of(fake_stripe, top_up)
    webhook.send(fake_stripe.event("charge.dispute.created", dispute))
    first_flagged = CheckoutSession.objects.get().disputed_at
    response = webhook.send(fake_stripe.event("charge.dispute.created", dict(dispute, id="dp_test_2")))
    assert response.json()["status"] == "processed"
    assert CheckoutSession.objects.get().disputed_at == first_flagged
    assert balance(project) == "125"


# --- reprocessing --------------------------------------------------------------------------------

def test_reprocessing_an_event_again_changes_nothing(webhook, fake_stripe, top_up, project):
    from payments.events import stripe_event_reprocess

    webhook.send(completed(fake_stripe, top_up))
    webhook.send(refunded(fake_stripe, top_up, 1000))
    ids = list(StripeEvent.objects.values_list("id", flat=True))
    assert stripe_event_reprocess(event_ids=ids) == {"processed": 2}
    assert stripe_event_reprocess(event_ids=ids) == {"processed": 2}
    assert set(StripeEvent.objects.values_list("attempts", flat=True)) == {3}
    assert balance(project) == "115"
    assert Transfer.objects.filter(project=project).exclude(kind=Transfer.Kind.CREDIT).count() == 2


def test_a_failed_event_is_applied_again_when_stripe_redelivers_it(webhook, fake_stripe, top_up, project):
    session = paid(fake_stripe, top_up)
    event = fake_stripe.event("checkout.session.completed", dict(session, amount_total=1))
    webhook.send(event)
    assert StripeEvent.objects.get().status == StripeEvent.Status.FAILED
    # Redelivery of a failed event is processed again (here it fails the same way, visibly, once more).
    assert webhook.send(event).json() == {"received": True, "id": event["id"], "status": "failed", "duplicate": True}
    assert StripeEvent.objects.get().attempts == 2
    assert balance(project) == "100"


# --- concurrency -----------------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_twenty_parallel_deliveries_of_one_event_fund_once(fake_stripe, project):
    fake_stripe.deliver_on_pay = False
    row = services.checkout_session_create(
        project=project, amount=credits_to_micros("25"), actor="user:1", idempotency_key="race",
        success_url="https://example.com/ok", cancel_url="https://example.com/no",
    )
    payload, signature = signed_body(completed(fake_stripe, row))

    def deliver(_):
        try:
            response = Client().post(WEBHOOK, payload, content_type="application/json",
                                     HTTP_STRIPE_SIGNATURE=signature)
            return response.status_code, json.loads(response.content)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(deliver, range(20)))

    assert [status for status, _ in answers] == [200] * 20
    assert sum(1 for _, body in answers if not body["duplicate"]) == 1
    assert StripeEvent.objects.count() == 1
    assert Transfer.objects.filter(kind=Transfer.Kind.TOP_UP).count() == 1
    assert balance(project) == "125"
    assert ledger_check().ok


@pytest.mark.django_db(transaction=True)
def test_twenty_parallel_distinct_events_for_one_session_fund_once(fake_stripe, project):
    fake_stripe.deliver_on_pay = False
    row = services.checkout_session_create(
        project=project, amount=credits_to_micros("25"), actor="user:1", idempotency_key="race-2",
        success_url="https://example.com/ok", cancel_url="https://example.com/no",
    )
    session = paid(fake_stripe, row)
    bodies = [signed_body(fake_stripe.event(kind, session))
              for kind in ["checkout.session.completed", "checkout.session.async_payment_succeeded"] * 10]

    def deliver(body):
        try:
            payload, signature = body
            return Client().post(WEBHOOK, payload, content_type="application/json",
                                 HTTP_STRIPE_SIGNATURE=signature).status_code
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=20) as pool:
        assert list(pool.map(deliver, bodies)) == [200] * 20
    assert StripeEvent.objects.count() == 20
    assert Transfer.objects.filter(kind=Transfer.Kind.TOP_UP).count() == 1
    assert balance(project) == "125"
