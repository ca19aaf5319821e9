"""The portal's writes are limited per signed-in user (PORTAL_RATE_LIMIT): one more is a 429 page with
Retry-After, and no top-up is started."""

from types import SimpleNamespace

import pytest
from django.test import Client
from prometheus_client import REGISTRY

from creditservice.lib import ratelimit
from wallets.tests.factories import UserFactory, member

pytestmark = pytest.mark.django_db

# 30 s into a minute: every post of a test falls in one window, whatever the real clock says.
WINDOW_START = 1_800_000_000.0


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch):
    monkeypatch.setattr(ratelimit, "clock", lambda: WINDOW_START + 30)


@pytest.fixture
def topups(settings, monkeypatch):
    """Card top-ups on, with payments' Checkout Session creation replaced by a recorder."""
    settings.STRIPE_SECRET_KEY = "sk_test_portal"
    settings.PORTAL_RATE_LIMIT = "2/minute"
    calls: list[dict] = []

    def create(**kwargs):
        calls.append(kwargs)
        return SimpleNamespace(url=f"https://checkout.stripe.test/pay/cs_{len(calls)}", status="open")

    monkeypatch.setattr("portal.views.checkout_session_create", create)
    return calls


def post_topup(browser: Client, n: int):
    return browser.post("/portal/acme/topup", {"amount": "10", "token": f"form-token-{n:016d}"})


def test_a_write_past_the_limit_is_a_429_page_and_starts_no_top_up(browser, project, topups):
    before = REGISTRY.get_sample_value("creditservice_rate_limited_total", {"scope": "portal_user"}) or 0.0
    assert [post_topup(browser, n).status_code for n in range(2)] == [303, 303]
    response = post_topup(browser, 2)
    assert response.status_code == 429
    assert response["Retry-After"] == "30"
    html = response.content.decode()
    assert "Too many requests" in html and "2 changes a minute" in html and "30 seconds" in html
    assert len(topups) == 2
    assert REGISTRY.get_sample_value("creditservice_rate_limited_total", {"scope": "portal_user"}) == before + 1


def test_each_user_is_counted_on_their_own(browser, project, topups):
    other = Client()
    other.force_login(member(project, UserFactory(username="olga")))
    assert [post_topup(browser, n).status_code for n in range(3)] == [303, 303, 429]
    assert [post_topup(other, n).status_code for n in range(3)] == [303, 303, 429]
    assert len(topups) == 4


def test_reading_pages_is_not_limited(browser, project, topups):
    for n in range(2):
        post_topup(browser, n)
    assert post_topup(browser, 2).status_code == 429
    assert browser.get("/portal/acme/").status_code == 200


def test_no_limit_when_the_setting_is_empty(browser, project, topups, settings):
    settings.PORTAL_RATE_LIMIT = ""
    assert {post_topup(browser, n).status_code for n in range(5)} == {303}
