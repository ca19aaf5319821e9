"""The payer lands on the success page at the moment Stripe's webhook arrives: the top-up is funded once.

The success redirect (portal/views.py topup_success) and the page's status poll only read. Funding is
the webhooks' alone (checkout.session.completed, and async_payment_succeeded, which Stripe may send as
well): payments/services.py checkout_session_fund, under the session's row lock and the ledger's
idempotency key. So whatever the interleaving, each top-up is one ledger transfer, and a page that
says "funded" shows a balance that includes it. Real threads, on every backend.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection
from django.test import Client

from creditservice.lib.money import credits_to_micros, format_amount
from creditservice.testing.invariants import assert_books_balance
from payments import services
from payments.models import CheckoutSession
from payments.tests.conftest import WEBHOOK
from payments.tests.signing import signed_body
from wallets.models import Account, Transfer

pytestmark = pytest.mark.django_db(transaction=True)

ROUNDS = 10


def _closing(function):
    try:
        return function()
    finally:
        connection.close()


def _paid_top_up(fake_stripe, project, key: str) -> CheckoutSession:
    row = services.checkout_session_create(
        project=project, amount=credits_to_micros("25"), actor="user:1", idempotency_key=key,
        success_url="https://example.com/ok", cancel_url="https://example.com/no",
    )
    fake_stripe.pay(row.stripe_session_id)
    return row


@pytest.mark.parametrize("page", ["success", "status"])
def test_a_page_that_says_funded_shows_the_balance_with_the_top_up(fake_stripe, project, tenant, monkeypatch, page):
    """The webhook commits between the page's read of the project (with its wallet) and of the session.
    The wallet read with the project was shown: "25 credits were added. New balance: 100"."""
    from portal import selectors

    fake_stripe.deliver_on_pay = False
    row = _paid_top_up(fake_stripe, project, "between-reads")
    read_session = selectors.checkout_session

    def webhook_lands_first(project_, session_id):
        services.checkout_session_fund(stripe_session=fake_stripe.sessions[row.stripe_session_id])
        return read_session(project_, session_id)

    monkeypatch.setattr(selectors, "checkout_session", webhook_lands_first)
    browser = Client()
    browser.force_login(tenant)
    response = browser.get(f"/portal/{project.slug}/topup/{page}", {"session_id": row.stripe_session_id})
    assert response.status_code == 200
    if page == "success":
        assert response.context["funded"] and response.context["wallet"].balance == credits_to_micros("125")
    else:
        assert response.json()["funded"] and response.json()["balance"] == "125"
    assert_books_balance()


def test_the_success_page_and_the_webhook_at_the_same_moment_fund_the_top_up_once(fake_stripe, project, tenant):
    fake_stripe.deliver_on_pay = False
    for round_ in range(ROUNDS):
        row = _paid_top_up(fake_stripe, project, f"success-race-{round_}")
        paid = fake_stripe.sessions[row.stripe_session_id]
        # Stripe may send both for one payment, and may send them at the same moment.
        events = [signed_body(fake_stripe.event(kind, paid))
                  for kind in ("checkout.session.completed", "checkout.session.async_payment_succeeded")]
        before = Account.objects.get(project=project).balance
        barrier = threading.Barrier(2 + len(events), timeout=60)
        query = {"session_id": row.stripe_session_id}

        def page():
            browser = Client()
            browser.force_login(tenant)
            barrier.wait()
            return browser.get(f"/portal/{project.slug}/topup/success", query)

        def poll():
            browser = Client()
            browser.force_login(tenant)
            barrier.wait()
            return browser.get(f"/portal/{project.slug}/topup/status", query)

        def webhook(payload: bytes, signature: str):
            barrier.wait()
            return Client().post(WEBHOOK, payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=signature)

        with ThreadPoolExecutor(max_workers=2 + len(events)) as pool:
            readers = [pool.submit(_closing, f) for f in (page, poll)]
            deliveries = [pool.submit(_closing, lambda body=body: webhook(*body)) for body in events]
            shown, polled = (f.result(timeout=120) for f in readers)
            delivered = [f.result(timeout=120) for f in deliveries]

        assert [d.status_code for d in delivered] == [200, 200], [d.content for d in delivered]
        assert shown.status_code == 200 and polled.status_code == 200
        after = before + credits_to_micros("25")
        # Whoever read first, a page that says funded shows the balance with the top-up in it.
        if shown.context["funded"]:
            assert shown.context["wallet"].balance == after
        status = polled.json()
        if status["funded"]:
            assert status["balance"] == format_amount(after)
        session = CheckoutSession.objects.get(id=row.id)
        assert session.status == CheckoutSession.Status.FUNDED
        assert Transfer.objects.filter(kind=Transfer.Kind.TOP_UP, reference=row.stripe_session_id).count() == 1
        assert Account.objects.get(project=project).balance == after

    assert Transfer.objects.filter(kind=Transfer.Kind.TOP_UP).count() == ROUNDS
    assert_books_balance()
