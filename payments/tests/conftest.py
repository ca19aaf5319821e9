"""Fixtures for the payments tests. `fake_stripe` is also registered suite-wide (creditservice/testing/fixtures.py)."""

import pytest
from django.test import Client

from payments.tests.fake_stripe import fake_stripe  # noqa: F401  (the fixture, for this package's tests)
from payments.tests.signing import TEST_WEBHOOK_SECRET, signed_body

WEBHOOK = "/stripe/webhook"


class WebhookSender:
    """Posts events to /stripe/webhook through Django's test client, signed as Stripe signs them."""

    def __init__(self, client: Client):
        self.client = client

    def send(self, event: dict, *, secret: str = TEST_WEBHOOK_SECRET, timestamp: int | None = None):
        payload, signature = signed_body(event, secret, timestamp)
        return self.client.post(WEBHOOK, payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=signature)


@pytest.fixture
def webhook(fake_stripe) -> WebhookSender:  # noqa: F811
    return WebhookSender(Client(enforce_csrf_checks=True))
