"""A signed delivery with text no database can store is kept (that text replaced), never a 500."""

import pytest
from django.test import Client

from payments.models import StripeEvent
from payments.tests.conftest import WebhookSender

pytestmark = pytest.mark.django_db


@pytest.fixture
def sender(fake_stripe) -> WebhookSender:
    return WebhookSender(Client(raise_request_exception=False))


def test_nul_and_lone_surrogates_in_a_signed_event_are_stored_replaced(sender):
    # PostgreSQL's jsonb refuses \u0000: the delivery was a 500, and Stripe redelivers a 500 for days.
    response = sender.send({"id": "evt_1", "type": "customer.created", "livemode": False,
                            "data": {"object": {"id": "cus_1", "name": "a\u0000b", "note\u0000": "\ud800"}}})
    assert response.status_code == 200, response.content
    stored = StripeEvent.objects.get(stripe_event_id="evt_1").payload["data"]["object"]
    assert (stored["name"], stored["note\ufffd"]) == ("a\ufffdb", "\ufffd")


@pytest.mark.parametrize("event_id", ["evt_\u0000", "evt_\u0001", "e" * 256])
def test_an_event_id_no_stripe_event_has_is_refused_and_nothing_is_stored(sender, event_id):
    response = sender.send({"id": event_id, "type": "customer.created", "livemode": False, "data": {"object": {}}})
    assert response.status_code == 400, response.content
    assert response.json()["error"] == "invalid_signature"
    assert not StripeEvent.objects.exists()
