"""Per-API-key rate limits on the admission API: API_RATE_LIMIT by default, a key's own rate_limit over it.
One call past the limit is a 429 rate_limited in the error shape with Retry-After, and it does nothing."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from prometheus_client import REGISTRY

from creditservice.lib import ratelimit
from creditservice.testing.fixtures import ServiceClient
from quotas.models import Reservation
from quotas.tests.helpers import CHECK, reserve
from wallets.auth import api_key_create
from wallets.models import ApiKey

# 30 s into a minute: every call of a test falls in one window, whatever the real clock says.
WINDOW_START = 1_800_000_000.0


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch):
    now = [WINDOW_START + 30]
    monkeypatch.setattr(ratelimit, "clock", lambda: now[0])
    return now


def key_client(rate_limit: str = "") -> ServiceClient:
    api_key, raw_key = api_key_create(name=f"key-{ApiKey.objects.count()}")
    if rate_limit:
        ApiKey.objects.filter(id=api_key.id).update(rate_limit=rate_limit)
    return ServiceClient(raw_key)


def check(client: ServiceClient):
    return client.post(CHECK, {"project": "acme", "resource_type": "vm", "quantity": "1", "amount": "1"}, format="json")


def allowed_calls(client: ServiceClient, tries: int) -> int:
    return sum(check(client).status_code == 200 for _ in range(tries))


def rate_limited_total() -> float:
    return REGISTRY.get_sample_value("creditservice_rate_limited_total", {"scope": "api_key"}) or 0.0


def test_the_call_past_the_default_limit_is_429_with_retry_after_and_reserves_nothing(platform, project, settings):
    settings.API_RATE_LIMIT = "3/minute"
    for _ in range(3):
        assert reserve(platform, amount="1").status_code == 201
    before = rate_limited_total()
    response = reserve(platform, amount="1")
    assert response.status_code == 429, response.json()
    body = response.json()
    assert body["error"] == "rate_limited"
    assert body["detail"] == "this API key may make 3 requests a minute; retry in 30 seconds"
    assert response["Retry-After"] == "30" and body["retry_after"] == 30
    assert Reservation.objects.count() == 3
    assert rate_limited_total() == before + 1


def test_a_new_window_lets_the_key_call_again(project, settings, fixed_clock):
    settings.API_RATE_LIMIT = "2/minute"
    client = key_client()
    assert allowed_calls(client, 3) == 2
    fixed_clock[0] = WINDOW_START + 60
    assert allowed_calls(client, 3) == 2


def test_a_key_of_its_own_may_make_more_or_fewer_calls_than_the_default(project, settings):
    settings.API_RATE_LIMIT = "3/minute"
    assert allowed_calls(key_client("5/minute"), 8) == 5
    assert allowed_calls(key_client("1/minute"), 8) == 1
    assert allowed_calls(key_client(), 8) == 3


def test_an_unlimited_key_is_never_limited(project, settings):
    settings.API_RATE_LIMIT = "2/minute"
    assert allowed_calls(key_client("unlimited"), 10) == 10


def test_a_key_of_its_own_is_limited_when_there_is_no_default(project, settings):
    settings.API_RATE_LIMIT = ""
    assert allowed_calls(key_client("2/hour"), 5) == 2


def test_no_limit_when_the_setting_is_empty(project, settings):
    settings.API_RATE_LIMIT = ""
    assert allowed_calls(key_client(), 30) == 30


def test_two_keys_are_counted_separately(project, settings):
    settings.API_RATE_LIMIT = "2/minute"
    first, second = key_client(), key_client()
    assert allowed_calls(first, 3) == 2
    assert allowed_calls(second, 3) == 2
    assert check(first).status_code == 429


def test_counting_adds_no_database_query(project, settings):
    client = key_client()
    check(client)  # the key is now cached, as it is on a warm worker

    def queries_of_one_call(rate: str) -> int:
        settings.API_RATE_LIMIT = rate
        with CaptureQueriesContext(connection) as captured:
            assert check(client).status_code == 200
        return len(captured)

    assert queries_of_one_call("1000/minute") == queries_of_one_call("")


def test_a_signed_in_staff_user_is_not_limited_by_the_key_limit(project, settings, admin_client):
    settings.API_RATE_LIMIT = "1/minute"
    calls = [admin_client.post(CHECK, {"project": "acme", "resource_type": "vm", "quantity": "1", "amount": "1"},
                               content_type="application/json") for _ in range(3)]
    assert [c.status_code for c in calls] == [200, 200, 200]
