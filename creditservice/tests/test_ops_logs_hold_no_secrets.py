"""No secret reaches a log line: not an API key, a Stripe signature or secret, nor a password. Everything
logged at DEBUG is searched, as pytest captures it and as LOG_FORMAT=json writes it."""

import logging

import pytest
from django.test import Client

from creditservice.lib.log_format import JsonFormatter
from creditservice.testing.fixtures import ServiceClient
from creditservice.testing.logs import capture_json_log
from payments.tests.signing import signed_body
from wallets.tests.factories import UserFactory, platform_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def everything_logged(caplog):
    """Every line logged while the test runs, by every logger (stripe's too) at DEBUG, in both formats."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="stripe")
    with capture_json_log() as json_log:
        yield lambda: "\n".join([caplog.text, json_log.text, *map(JsonFormatter().format, caplog.records),
                                 *(record.getMessage() for record in caplog.records)])


def test_api_keys_are_never_logged(everything_logged, project):
    key = platform_key(name="ops")
    api = ServiceClient(key)
    assert api.get("/api/v1/projects/acme/wallet").status_code == 200
    assert api.get(f"/api/v1/projects/nobody/wallet?api_key={key}").status_code == 404
    assert api.post_idem("/api/v1/projects/acme/wallet/debit", {"amount": "1000", "reason": "x"}).status_code == 402
    unknown = "cs_" + "u" * 43
    assert ServiceClient(unknown).get("/api/v1/projects/acme/wallet").status_code == 401
    logged = everything_logged()
    assert "api_key=ops" in logged  # the key's name is there
    assert key not in logged and unknown not in logged
    assert key[10:] not in logged  # nor the part after the stored prefix


def test_stripe_signatures_and_secrets_are_never_logged(everything_logged, fake_stripe, platform, project):
    created = platform.post_idem("/api/v1/projects/acme/checkout-sessions", {"amount": "25"})
    assert created.status_code == 201, created.content
    fake_stripe.deliver_on_pay = False  # this test posts the event itself, through the test client
    fake_stripe.pay(created.json()["id"])
    event = fake_stripe.event("checkout.session.completed", fake_stripe.sessions[created.json()["id"]])
    body, signature = signed_body(event, fake_stripe.webhook_secret)
    webhook = Client(enforce_csrf_checks=True)
    assert webhook.post("/stripe/webhook", body, content_type="application/json",
                        HTTP_STRIPE_SIGNATURE=signature).status_code == 200
    _, forged = signed_body(event, "whsec_not_the_right_one_0123456789")
    assert webhook.post("/stripe/webhook", body, content_type="application/json",
                        HTTP_STRIPE_SIGNATURE=forged).status_code == 400
    logged = everything_logged()
    for secret in (signature, signature.split("v1=")[1], forged.split("v1=")[1], fake_stripe.webhook_secret,
                   fake_stripe.secret_key):
        assert secret not in logged


@pytest.fixture
def ann(db):
    # Before the capture starts: factory-boy logs the password it sets at DEBUG.
    return UserFactory(username="ann")


def test_passwords_are_never_logged(ann, everything_logged):
    browser = Client()
    assert browser.post("/accounts/login/", {"username": "ann", "password": "Wr0ng-horse-battery"}).status_code == 200
    assert browser.post("/accounts/login/", {"username": "ann", "password": "pw-for-tests-1"}).status_code == 302
    logged = everything_logged()
    assert "creditservice.request" in logged  # the sign-ins were logged, without what was typed
    assert "Wr0ng-horse-battery" not in logged and "pw-for-tests-1" not in logged
