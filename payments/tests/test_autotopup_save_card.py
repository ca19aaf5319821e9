"""Saving the card of a normal top-up for automatic top-ups, against the local fake of Stripe: the Checkout
Session carries the project's customer and setup_future_usage, the owner's consent is recorded as on the
auto top-up page, the paid event funds the wallet and saves the PaymentIntent's card once, and the next
threshold crossing charges that card off-session. Without the tick nothing is saved.

Transactional tests: auto top-up's check runs after the ledger's commit (on_commit), as in production.
"""

import pytest
from django.test import Client

from creditservice.lib.errors import ValidationFailed
from creditservice.lib.money import credits_to_micros
from payments import autotopup
from payments.models import AutoTopUp, AutoTopUpCharge, CheckoutSession, StripeEvent
from payments.services import checkout_session_create
from payments.tests.conftest import WebhookSender
from payments.tests.test_autotopup import available, spend
from payments.topup_card import checkout_session_create_saving_card
from wallets.models import Transfer

pytestmark = pytest.mark.django_db(transaction=True)

URLS = {"success_url": "https://example.com/ok", "cancel_url": "https://example.com/no"}


@pytest.fixture
def webhook(fake_stripe, settings) -> WebhookSender:
    settings.CELERY_TASK_ALWAYS_EAGER = True
    fake_stripe.deliver_on_pay = False
    return WebhookSender(Client())


def top_up_saving_card(project, key: str = "save-1", actor: str = "user:7") -> CheckoutSession:
    return checkout_session_create_saving_card(project=project, amount=credits_to_micros("25"), actor=actor,
                                               idempotency_key=key, terms_version=autotopup.TERMS_VERSION, **URLS)


def pay(fake_stripe, webhook, session: CheckoutSession) -> dict:
    fake_stripe.pay(session.stripe_session_id)  # deliver_on_pay is off: the test delivers it
    completed = fake_stripe.event("checkout.session.completed", fake_stripe.sessions[session.stripe_session_id])
    response = webhook.send(completed)
    assert response.status_code == 200 and response.json()["status"] == "processed", response.content
    return completed


def test_a_top_up_that_saves_the_card_records_consent_and_the_next_crossing_charges_it(fake_stripe, webhook, project):
    session = top_up_saving_card(project)
    [request] = fake_stripe.created_sessions
    row = AutoTopUp.objects.get(project=project)
    assert request.params["mode"] == "payment" and request.params["customer"] == row.stripe_customer_id
    assert request.params["payment_intent_data"]["setup_future_usage"] == "off_session"
    assert row.stripe_customer_id.startswith("cus_") and not row.stripe_payment_method_id
    assert (row.consent_by, row.consent_terms_version, row.consent_terms_text) == (
        "user:7", autotopup.TERMS_VERSION, autotopup.TERMS_TEXT) and row.consent_at is not None

    pay(fake_stripe, webhook, session)
    assert available(project) == "125"
    session.refresh_from_db()
    intent = fake_stripe.payment_intents[session.stripe_payment_intent_id]
    row.refresh_from_db()
    assert row.stripe_payment_method_id == intent["payment_method"] and row.card_saved_at is not None
    assert session.card_saved_at is not None

    # Consent is already recorded: turning it on needs no second tick.
    autotopup.autotopup_update(project=project, actor="user:7", enabled=True, threshold=credits_to_micros("20"),
                               target=credits_to_micros("100"), monthly_cap=credits_to_micros("1000"), consent=False)
    autotopup.forget_enabled_projects()
    spend(project, "110", "fall")  # 15 < 20
    [charge] = AutoTopUpCharge.objects.filter(project=project)
    [off_session] = fake_stripe.created_payment_intents
    assert charge.status == AutoTopUpCharge.Status.PROCESSING
    assert off_session.params["payment_method"] == intent["payment_method"]
    assert off_session.params["customer"] == row.stripe_customer_id and off_session.params["off_session"] == "true"


def test_a_replayed_paid_event_funds_once_and_never_puts_back_a_replaced_card(fake_stripe, webhook, project):
    session = top_up_saving_card(project)
    completed = pay(fake_stripe, webhook, session)
    assert len(fake_stripe.requests_to("GET", f"/v1/payment_intents/{fake_stripe.last_session()['payment_intent']}")) == 1
    AutoTopUp.objects.filter(project=project).update(stripe_payment_method_id="pm_replaced_on_the_setup_page")
    assert webhook.send(dict(completed, id="evt_test_same_payment_again")).json()["status"] == "processed"
    assert AutoTopUp.objects.get(project=project).stripe_payment_method_id == "pm_replaced_on_the_setup_page"
    assert Transfer.objects.filter(project=project, kind=Transfer.Kind.TOP_UP).count() == 1


def test_without_the_tick_nothing_is_saved(fake_stripe, webhook, project):
    session = checkout_session_create(project=project, amount=credits_to_micros("25"), actor="user:7",
                                      idempotency_key="plain", **URLS)
    [request] = fake_stripe.created_sessions
    assert "customer" not in request.params and "setup_future_usage" not in request.params["payment_intent_data"]
    pay(fake_stripe, webhook, session)
    assert available(project) == "125"
    assert not AutoTopUp.objects.filter(project=project).exclude(stripe_payment_method_id="").exists()
    assert not AutoTopUp.objects.filter(project=project, consent_at__isnull=False).exists()
    assert not [r for r in fake_stripe.requests if r.path.startswith("/v1/payment_intents")]


def test_terms_changed_since_the_page_was_shown_are_refused_and_nothing_is_recorded(fake_stripe, project):
    with pytest.raises(ValidationFailed) as refused:
        checkout_session_create_saving_card(project=project, amount=credits_to_micros("25"), actor="user:7",
                                            idempotency_key="old-terms", terms_version="2020-01-01", **URLS)
    assert "save_card" in refused.value.detail
    assert not fake_stripe.requests and not AutoTopUp.objects.filter(consent_at__isnull=False).exists()


def test_stripe_unreachable_when_reading_the_card_funds_now_and_saves_it_on_redelivery(fake_stripe, webhook, project):
    session = top_up_saving_card(project)
    fake_stripe.pay(session.stripe_session_id)
    completed = fake_stripe.event("checkout.session.completed", fake_stripe.sessions[session.stripe_session_id])
    fake_stripe.fail_next = [(500, "Stripe is down")]
    assert webhook.send(completed).status_code == 500  # Stripe redelivers
    assert available(project) == "125"  # the money moved; only the card is pending
    assert not AutoTopUp.objects.get(project=project).stripe_payment_method_id
    assert StripeEvent.objects.get(stripe_event_id=completed["id"]).status == "failed"
    assert webhook.send(completed).json()["status"] == "processed"
    assert AutoTopUp.objects.get(project=project).stripe_payment_method_id.startswith("pm_")
    assert Transfer.objects.filter(project=project, kind=Transfer.Kind.TOP_UP).count() == 1
