"""The top-up form's "Save this card for automatic top-ups": offered to owners with the terms, it records their
consent and opens a Checkout that keeps the card; members are not offered it and are refused if they try."""

import pytest
from django.test import Client
from django.utils.html import escape

from payments import autotopup
from payments.models import AutoTopUp, CheckoutSession
from wallets.models import Membership
from wallets.tests.factories import UserFactory, member

pytestmark = pytest.mark.django_db

TOKEN = "form-token-0123456789"
TOP_UP = "/portal/acme/topup"


@pytest.fixture
def owner(project) -> tuple[Client, object]:
    user = member(project, UserFactory(username="olga"), role=Membership.Role.OWNER)
    client = Client()
    client.force_login(user)
    return client, user


def test_an_owner_is_offered_the_tick_with_the_terms(owner, fake_stripe, project):
    client, _ = owner
    page = client.get("/portal/acme/").content.decode()
    assert page.count('name="save_card"') == 2 and "Save this card for automatic top-ups" in page
    assert escape(autotopup.TERMS_TEXT) in page and f'name="terms_version" value="{autotopup.TERMS_VERSION}"' in page


def test_a_member_is_not_offered_it_and_is_refused_if_they_send_it(browser, fake_stripe, project):
    assert 'name="save_card"' not in browser.get("/portal/acme/").content.decode()
    response = browser.post(TOP_UP, {"amount": "25", "token": TOKEN, "save_card": "on",
                                     "terms_version": autotopup.TERMS_VERSION})
    assert response.status_code == 403
    assert not fake_stripe.requests and not CheckoutSession.objects.exists()
    assert not AutoTopUp.objects.filter(consent_at__isnull=False).exists()


def test_an_owner_who_ticks_it_agrees_and_goes_to_a_checkout_that_keeps_the_card(owner, fake_stripe, project):
    client, user = owner
    response = client.post(TOP_UP, {"amount": "25", "token": TOKEN, "save_card": "on",
                                    "terms_version": autotopup.TERMS_VERSION})
    assert response.status_code == 303, response.content.decode()
    stripe_session = fake_stripe.last_session()
    assert response["Location"] == stripe_session["url"]
    session = CheckoutSession.objects.get()
    row = AutoTopUp.objects.get(project=project)
    assert session.save_card and stripe_session["customer"] == row.stripe_customer_id
    assert (row.consent_by, row.consent_terms_version) == (f"user:{user.pk}", autotopup.TERMS_VERSION)
    [request] = fake_stripe.created_sessions
    assert request.params["payment_intent_data"]["setup_future_usage"] == "off_session"


def test_an_owner_who_does_not_tick_it_saves_nothing(owner, fake_stripe, project):
    client, _ = owner
    assert client.post(TOP_UP, {"amount": "25", "token": TOKEN}).status_code == 303
    assert not CheckoutSession.objects.get().save_card
    assert "customer" not in fake_stripe.created_sessions[0].params
    assert not AutoTopUp.objects.filter(consent_at__isnull=False).exists()


def test_terms_changed_since_the_page_was_shown_are_shown_and_nothing_is_recorded(owner, fake_stripe, project):
    client, _ = owner
    response = client.post(TOP_UP, {"amount": "25", "token": TOKEN, "save_card": "on", "terms_version": "2020-01-01"})
    assert response.status_code == 400 and "The terms changed" in response.content.decode()
    assert not fake_stripe.requests and not AutoTopUp.objects.filter(consent_at__isnull=False).exists()


def test_a_refunded_automatic_charge_shows_what_was_taken_back(owner, project):
    from payments.models import AutoTopUpCharge

    client, _ = owner
    AutoTopUpCharge.objects.create(project=project, crossing=1, available_before=0, status="succeeded",
                                   amount=85_000_000, currency="usd", currency_amount=8500, refunded_amount=30_000_000,
                                   closed_at="2026-12-01T00:00:00Z", transfer=_a_top_up(project))
    assert "85 (30 refunded)" in client.get("/portal/acme/auto-top-up").content.decode()


def test_a_disputed_automatic_charge_says_so(owner, project):
    from payments.models import AutoTopUpCharge

    client, _ = owner
    AutoTopUpCharge.objects.create(project=project, crossing=1, available_before=0, status="succeeded",
                                   amount=85_000_000, currency="usd", currency_amount=8500, disputed=True,
                                   disputed_at="2026-12-01T01:00:00Z", closed_at="2026-12-01T00:00:00Z",
                                   transfer=_a_top_up(project))
    assert "succeeded, disputed" in client.get("/portal/acme/auto-top-up").content.decode()


def _a_top_up(project):
    from wallets.models import Transfer
    from wallets.tests.factories import fund

    fund(project, "85", key="auto-charge")
    return Transfer.objects.get(idempotency_key="auto-charge")
