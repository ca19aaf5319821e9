"""POST /checkout-sessions when Stripe is slow or fails: write-ahead, no transaction across the call, one
Checkout Session per Idempotency-Key. Real threads, on SQLite and PostgreSQL."""

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connection

from creditservice.testing.fixtures import ServiceClient
from payments import services, stripe_client
from payments.models import CheckoutSession
from wallets.tests.factories import ProjectFactory, platform_key

pytestmark = pytest.mark.django_db(transaction=True)

URL = "/api/v1/projects/acme/checkout-sessions"


@pytest.fixture
def raw_key() -> str:
    ProjectFactory(slug="acme", balance="10")
    return platform_key()


def _post(raw_key: str, body: dict, key: str):
    try:
        return ServiceClient(raw_key).post_idem(URL, body, key=key)
    finally:
        connection.close()


def test_stripe_is_called_outside_any_transaction(raw_key, fake_stripe, monkeypatch):
    create = stripe_client.checkout_session_create
    seen = []

    def watched(**kwargs):
        seen.append(connection.in_atomic_block)
        return create(**kwargs)

    monkeypatch.setattr(stripe_client, "checkout_session_create", watched)
    assert _post(raw_key, {"amount": "25"}, "k").status_code == 201
    assert seen == [False]


def test_a_stripe_failure_keeps_the_write_ahead_row_and_the_retry_resumes_it(raw_key, fake_stripe):
    fake_stripe.fail_next.append((500, "Stripe is down"))
    failed = _post(raw_key, {"amount": "25"}, "resume")
    assert failed.status_code == 503 and failed.json()["error"] == "stripe_unavailable"
    row = CheckoutSession.objects.get()
    assert (row.status, row.stripe_session_id) == (CheckoutSession.Status.PENDING, None)
    assert "Stripe is down" in row.error

    retry = _post(raw_key, {"amount": "25"}, "resume")
    assert retry.status_code == 201, retry.json()
    assert CheckoutSession.objects.get().id == row.id
    # Every call for this top-up carried the key built from its row: Stripe can have made one session.
    assert {r.idempotency_key for r in fake_stripe.created_sessions} == {services.stripe_idempotency_key(row)}
    assert len(fake_stripe.sessions) == 1


def test_after_a_failure_the_same_key_with_another_amount_is_a_new_top_up(raw_key, fake_stripe):
    fake_stripe.fail_next.append((500, "Stripe is down"))
    assert _post(raw_key, {"amount": "25"}, "changed").status_code == 503
    retry = _post(raw_key, {"amount": "30"}, "changed")
    assert retry.status_code == 201, retry.json()
    assert retry.json()["amount"] == "30"


def test_a_retry_that_takes_over_a_slow_top_up_gets_the_same_checkout_session(raw_key, fake_stripe, settings,
                                                                              monkeypatch):
    """The first request's Stripe call outlives the idempotency lock timeout; its retry takes the claim
    over. Both attempts reach the same write-ahead row and send Stripe the same Idempotency-Key, so one
    key makes one Checkout Session and both answers name it."""
    settings.IDEMPOTENCY_LOCK_TIMEOUT = timedelta(0)
    reached, go = threading.Event(), threading.Event()
    create = stripe_client.checkout_session_create
    calls = []

    def slow_first(**kwargs):
        calls.append(kwargs["idempotency_key"])
        if len(calls) == 1:
            reached.set()
            assert go.wait(60)
        return create(**kwargs)

    monkeypatch.setattr(stripe_client, "checkout_session_create", slow_first)
    with ThreadPoolExecutor(max_workers=1) as pool:
        first = pool.submit(_post, raw_key, {"amount": "25"}, "slow")
        assert reached.wait(60)
        retry = _post(raw_key, {"amount": "25"}, "slow")
        go.set()
        answers = [first.result(timeout=60), retry]

    assert [a.status_code for a in answers] == [201, 201], [a.json() for a in answers]
    assert answers[0].json()["id"] == answers[1].json()["id"]
    assert len(calls) == 2 and len(set(calls)) == 1
    assert len(fake_stripe.sessions) == 1
    assert CheckoutSession.objects.count() == 1
