"""Checkout return URLs: a caller's success_url / cancel_url must be on SITE_URL's origin or one of
CHECKOUT_RETURN_ORIGINS; any other host is a 400 that makes nothing (a payer is never sent, after paying,
to a page of the caller's choosing)."""

import pytest

from payments.models import CheckoutSession
from payments.services import url_origin

URL = "/api/v1/projects/acme/checkout-sessions"


@pytest.fixture
def site(settings):
    settings.SITE_URL = "https://billing.example.com"
    settings.CHECKOUT_RETURN_ORIGINS = ["https://app.example.com:8443"]


@pytest.mark.parametrize("url", [
    "https://evil.example/phish",
    "https://billing.example.com@evil.example/",  # user info: the host is evil.example
    "https://billing.example.com.evil.example/",
    "https://evil.example/https://billing.example.com/",
    "http://billing.example.com/",  # another scheme is another origin
    "https://billing.example.com:444/",
    "https://app.example.com/",  # the allowed origin is on port 8443
    "https://xn--bllng-example-com.example/",
])
@pytest.mark.parametrize("field", ["success_url", "cancel_url"])
def test_a_return_url_on_another_origin_is_a_400_that_makes_nothing(platform, project, fake_stripe, site, field, url):
    response = platform.post_idem(URL, {"amount": "25", field: url})
    assert response.status_code == 400, response.json()
    body = response.json()
    assert body["error"] == "validation_error"
    assert "https://billing.example.com:443" in body["detail"][field][0]
    assert not CheckoutSession.objects.exists()
    assert fake_stripe.created_sessions == []


@pytest.mark.parametrize("url", [
    "https://billing.example.com/portal/acme/done",
    "https://BILLING.example.com:443/x?y=1",
    "https://app.example.com:8443/paid",
])
def test_a_return_url_on_our_site_or_a_configured_origin_is_taken(platform, project, fake_stripe, site, url):
    response = platform.post_idem(URL, {"amount": "25", "success_url": url, "cancel_url": url})
    assert response.status_code == 201, response.json()
    assert fake_stripe.created_sessions[0].params["cancel_url"] == url


def test_the_default_return_urls_are_on_our_site(platform, project, fake_stripe, site):
    assert platform.post_idem(URL, {"amount": "25"}).status_code == 201
    params = fake_stripe.created_sessions[0].params
    assert params["success_url"].startswith("https://billing.example.com/portal/acme/")


def test_an_origin_is_scheme_host_and_port():
    assert url_origin("https://A.example/x") == "https://a.example:443"
    assert url_origin("http://a.example:8000") == "http://a.example:8000"
    assert url_origin("https://a.example@b.example/") is None
    assert url_origin("https://a.example:99999/") is None
    assert url_origin("javascript:alert(1)") is None
