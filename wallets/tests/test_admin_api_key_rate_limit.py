"""Staff set an API key's own rate limit in the admin: at creation or later; a malformed one is refused."""

import pytest
from django.contrib.auth.models import Permission

from creditservice.lib import ratelimit
from creditservice.testing.fixtures import ServiceClient
from wallets.auth import api_key_create, principal_for_key
from wallets.models import ApiKey
from wallets.tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def change(client, key: ApiKey, rate_limit: str):
    return client.post(f"/admin/wallets/apikey/{key.pk}/change/", {"rate_limit": rate_limit})


def test_a_key_made_in_the_admin_keeps_its_rate_limit(admin_client):
    response = admin_client.post("/admin/wallets/apikey/add/", {"name": "gateway", "rate_limit": "100/second"})
    assert response.status_code == 200
    assert ApiKey.objects.get(name="gateway").rate_limit == "100/second"


def test_staff_change_the_rate_limit_and_this_worker_applies_it_at_once(admin_client):
    key, raw_key = api_key_create(name="gateway")
    assert principal_for_key(raw_key).rate_limit == ""  # cached, as on a busy worker
    assert change(admin_client, key, "unlimited").status_code == 302
    key.refresh_from_db()
    assert key.rate_limit == "unlimited"
    assert principal_for_key(raw_key).rate_limit == "unlimited"
    assert change(admin_client, key, "").status_code == 302
    key.refresh_from_db()
    assert key.rate_limit == ""


@pytest.mark.parametrize("rate_limit", ["lots", "0/minute", "10/fortnight", "-5/second", "10 per minute"])
def test_a_malformed_rate_limit_is_refused(admin_client, rate_limit):
    key, _ = api_key_create(name="gateway", rate_limit="5/minute")
    response = change(admin_client, key, rate_limit)
    assert response.status_code == 200
    assert "is not a rate" in response.content.decode()
    key.refresh_from_db()
    assert key.rate_limit == "5/minute"


def test_a_view_only_user_cannot_change_it(client):
    key, _ = api_key_create(name="gateway", rate_limit="5/minute")
    viewer = UserFactory(username="viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_apikey"))
    client.force_login(viewer)
    assert change(client, key, "unlimited").status_code == 403
    key.refresh_from_db()
    assert key.rate_limit == "5/minute"


def test_the_api_applies_a_limit_set_in_the_admin(admin_client, project, settings, monkeypatch):
    monkeypatch.setattr(ratelimit, "clock", lambda: 1_800_000_000.0)  # both calls in one window
    settings.API_RATE_LIMIT = ""
    key, raw_key = api_key_create(name="gateway")
    change(admin_client, key, "1/day")
    client = ServiceClient(raw_key)
    statuses = [client.get("/api/v1/projects/acme/wallet").status_code for _ in range(2)]
    assert statuses == [200, 429]
