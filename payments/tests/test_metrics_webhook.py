"""Each Stripe delivery moves creditservice_stripe_webhook_events_total once, by event type and result."""

import pytest

from creditservice.lib.metrics import STRIPE_WEBHOOK_EVENTS
from creditservice.testing.metrics import sample_value
from payments import events
from payments.tests.conftest import WEBHOOK
from payments.tests.test_webhook import completed, top_up  # noqa: F401  (the fixture)

COMPLETED = "checkout.session.completed"


def counted(event_type: str, result: str) -> float:
    return sample_value(STRIPE_WEBHOOK_EVENTS, type=event_type, result=result)


def test_a_processed_event_then_its_redelivery_count_as_processed_and_duplicate(webhook, fake_stripe, top_up):  # noqa: F811
    processed, duplicate = counted(COMPLETED, "processed"), counted(COMPLETED, "duplicate")
    event = completed(fake_stripe, top_up)
    assert webhook.send(event).status_code == 200
    assert counted(COMPLETED, "processed") == processed + 1
    assert webhook.send(event).json()["duplicate"] is True
    assert counted(COMPLETED, "duplicate") == duplicate + 1
    assert counted(COMPLETED, "processed") == processed + 1


def test_a_tampered_body_counts_as_invalid_signature_without_its_claimed_type(fake_stripe, top_up, client):  # noqa: F811
    from payments.tests.signing import signed_body

    before = counted("other", "invalid_signature")
    payload, signature = signed_body(completed(fake_stripe, top_up))
    response = client.post(WEBHOOK, payload + b" ", content_type="application/json", HTTP_STRIPE_SIGNATURE=signature)
    assert response.status_code == 400
    assert counted("other", "invalid_signature") == before + 1
    assert counted(COMPLETED, "invalid_signature") == 0


def test_an_unhandled_type_counts_as_ignored_under_its_type(webhook, fake_stripe, db):
    before = counted("customer.created", "ignored")
    webhook.send(fake_stripe.event("customer.created", {"id": "cus_1", "object": "customer"}))
    assert counted("customer.created", "ignored") == before + 1


@pytest.mark.parametrize("event_type", ["Not A Type", "x" * 300, "checkout.session.completed\n", "a.b." + "c" * 90])
def test_a_type_no_stripe_event_has_counts_as_other(webhook, fake_stripe, db, event_type):
    before = counted("other", "ignored")
    assert webhook.send(fake_stripe.event(event_type, {"id": "x_1", "object": "thing"})).status_code == 200
    assert counted("other", "ignored") == before + 1


def test_an_event_that_cannot_be_applied_counts_as_failed(webhook, fake_stripe, top_up):  # noqa: F811
    before = counted(COMPLETED, "failed")
    session = dict(fake_stripe.sessions[top_up.stripe_session_id], amount_total=99, payment_status="paid")
    webhook.send(fake_stripe.event(COMPLETED, session))
    assert counted(COMPLETED, "failed") == before + 1


def test_an_unexpected_error_counts_as_failed_and_is_answered_500(webhook, fake_stripe, top_up, monkeypatch):  # noqa: F811
    def broken(obj):
        raise RuntimeError("a bug")

    monkeypatch.setitem(events.HANDLERS, COMPLETED, broken)
    before = counted(COMPLETED, "failed")
    response = webhook.send(completed(fake_stripe, top_up))
    assert response.status_code == 500 and response.json()["error"] == "processing_failed"
    assert counted(COMPLETED, "failed") == before + 1


def test_event_type_labels_are_bounded():
    assert events.event_type_label("charge.dispute.created") == "charge.dispute.created"
    assert events.event_type_label(None) == events.event_type_label(12) == "other"
    assert events.event_type_label("UPPER.case") == events.event_type_label("nodot") == "other"
