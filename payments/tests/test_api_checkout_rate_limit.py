"""At most CHECKOUT_SESSIONS_PER_PROJECT_PER_HOUR open top-ups per project in an hour: one more is a 429
rate_limited with Retry-After (in the error shape), and neither a row nor a Stripe call is made."""

import pytest

from creditservice.testing.fixtures import ServiceClient
from payments.models import CheckoutSession
from wallets.tests.factories import ProjectFactory, member, platform_key

URL = "/api/v1/projects/acme/checkout-sessions"


@pytest.fixture
def limit(settings):
    settings.CHECKOUT_SESSIONS_PER_PROJECT_PER_HOUR = 2


def test_one_top_up_past_the_limit_is_429_with_retry_after(platform, project, fake_stripe, limit):
    for key in ("k1", "k2"):
        assert platform.post_idem(URL, {"amount": "10"}, key=key).status_code == 201
    response = platform.post_idem(URL, {"amount": "10"}, key="k3")
    assert response.status_code == 429, response.json()
    body = response.json()
    assert body["error"] == "rate_limited" and "at most 2 open top-ups" in body["detail"]
    assert 1 <= int(response["Retry-After"]) <= 3600
    assert body["retry_after"] == int(response["Retry-After"])
    assert CheckoutSession.objects.count() == 2
    assert len(fake_stripe.created_sessions) == 2


def test_a_retry_of_a_top_up_already_made_is_never_limited(platform, project, fake_stripe, limit):
    first = platform.post_idem(URL, {"amount": "10"}, key="k1").json()
    platform.post_idem(URL, {"amount": "10"}, key="k2")
    replay = platform.post_idem(URL, {"amount": "10"}, key="k1")
    assert replay.status_code == 201 and replay.json()["id"] == first["id"]


def test_a_paid_or_expired_top_up_frees_its_place(platform, project, fake_stripe, limit):
    platform.post_idem(URL, {"amount": "10"}, key="k1")
    platform.post_idem(URL, {"amount": "10"}, key="k2")
    CheckoutSession.objects.filter(id=CheckoutSession.objects.order_by("id").first().id).update(
        status=CheckoutSession.Status.EXPIRED)
    assert platform.post_idem(URL, {"amount": "10"}, key="k3").status_code == 201


def test_the_limit_is_per_project(platform, project, fake_stripe, limit):
    ProjectFactory(slug="globex")
    platform.post_idem(URL, {"amount": "10"}, key="k1")
    platform.post_idem(URL, {"amount": "10"}, key="k2")
    other = ServiceClient(platform_key("other")).post_idem("/api/v1/projects/globex/checkout-sessions", {"amount": "10"})
    assert other.status_code == 201


def test_the_portal_says_so_too(client, project, fake_stripe, limit):
    platform = ServiceClient(platform_key("p"))
    platform.post_idem(URL, {"amount": "10"}, key="k1")
    platform.post_idem(URL, {"amount": "10"}, key="k2")
    client.force_login(member(project))
    response = client.post("/portal/acme/topup", {"amount": "10", "token": "t" * 24})
    assert response.status_code == 429
    assert "At most 2 open top-ups" in response.content.decode()
    assert CheckoutSession.objects.count() == 2
