"""The whole top-up through HTTP: our API → the fake's payment page → signed webhook to a live server."""

import requests
from django.core.checks import Warning

from creditservice.lib.money import (
    credits_to_currency_minor,
    format_currency_minor,
    proportional_micros,
)
from payments.checks import stripe_configuration
from payments.models import CheckoutSession, StripeEvent
from wallets.models import Account


def test_paying_on_the_checkout_page_funds_the_wallet_and_returns_to_the_success_url(live_server, fake_stripe,
                                                                                       project, platform, settings):
    fake_stripe.webhook_url = live_server.url + "/stripe/webhook"
    settings.CHECKOUT_RETURN_ORIGINS = ["https://app.example.com"]
    created = platform.post_idem("/api/v1/projects/acme/checkout-sessions",
                                 {"amount": "25", "success_url": "https://app.example.com/done"}).json()

    local = requests.Session()
    local.trust_env = False  # loopback only
    page = local.get(created["url"])
    assert page.status_code == 200 and "25.00 USD" in page.text and 'id="pay"' in page.text

    paid = local.post(created["url"], allow_redirects=False)
    assert paid.status_code == 303
    assert paid.headers["Location"] == f"https://app.example.com/done?session_id={created['id']}"
    [delivery] = fake_stripe.deliveries
    assert delivery.status == 200, delivery.body
    assert StripeEvent.objects.get().status == StripeEvent.Status.PROCESSED
    assert CheckoutSession.objects.get().status == CheckoutSession.Status.FUNDED
    assert Account.objects.get(project=project).balance == 125_000_000


def test_a_missing_secret_key_is_reported_at_start_up(settings):
    settings.STRIPE_SECRET_KEY = ""
    [warning] = stripe_configuration(None)
    assert isinstance(warning, Warning) and warning.id == "payments.W001"
    settings.STRIPE_SECRET_KEY = "sk_test_x"
    settings.STRIPE_WEBHOOK_SECRET = ""
    assert [w.id for w in stripe_configuration(None)] == ["payments.W002"]
    settings.STRIPE_WEBHOOK_SECRET = "whsec_x"
    assert stripe_configuration(None) == []


def test_credits_convert_to_currency_exactly_or_not_at_all():
    assert credits_to_currency_minor(25_000_000, credits_per_unit="1", currency="usd") == 2500
    assert credits_to_currency_minor(25_000_000, credits_per_unit="1", currency="JPY") == 25
    assert credits_to_currency_minor(25_000_000, credits_per_unit="1", currency="kwd") == 25000
    assert credits_to_currency_minor(10_005_000, credits_per_unit="1", currency="usd") is None
    assert credits_to_currency_minor(10_000_000, credits_per_unit="3", currency="usd") is None
    assert format_currency_minor(2500, "usd") == "25.00"
    assert format_currency_minor(5, "usd") == "0.05"
    assert format_currency_minor(1500, "jpy") == "1500"


def test_a_refunded_share_rounds_once_and_a_full_refund_is_exact():
    assert proportional_micros(25_000_000, 1000, 2500) == 10_000_000
    assert proportional_micros(10_000_000, 1, 3) == 3_333_333
    assert proportional_micros(10_000_000, 2, 3) == 6_666_667
    assert proportional_micros(10_000_000, 3, 3) == 10_000_000
    assert proportional_micros(10_000_000, 5, 3) == 10_000_000
