"""One grammar for every amount and quantity the API takes (creditservice/lib/money.py): a JSON string of
ASCII digits with an optional point and 1 to 6 decimals. Anything else — a JSON number, an exponent,
spaces, a sign, a non-ASCII digit, "5." or ".5", NaN — is a 400 validation_error in the error shape
that names the expected form and writes nothing, on every field of every endpoint."""

import json

import pytest
from django.utils import timezone

from creditservice.lib.money import DECIMAL_FORM_MESSAGE
from creditservice.testing.fixtures import ServiceClient
from creditservice.testing.snapshots import money_snapshot
from metering.models import UsageEvent
from quotas.selectors import clear_caches
from wallets.models import Account
from wallets.tests.factories import ProjectFactory, platform_key

pytestmark = pytest.mark.django_db

# Refused today as before or newly: "1e2" credited 100, " 5 ", "+5" and "٣" (Arabic-Indic three) were taken.
NOT_AMOUNTS = [5, 2.5, True, "1e2", " 5 ", "+5", "\u0663", "\uff15", "-0", "", ".", "5.", ".5", "NaN", "Infinity",
               "1_000", "1,5", "0.0000001", ["1"]]

PROJECT = "/api/v1/projects/acme"
RESERVE = "/api/v1/reservations"


def _reservation(**change) -> dict:
    return {"project": "acme", "resource_type": "vm", "quantity": "1", "amount": "1", **change}


def _by_hourly_cost(value) -> dict:
    body = _reservation(hourly_cost=value)
    del body["amount"]
    return body


# (id, method, path, body for the value, the field that must be named, Idempotency-Key needed)
FIELDS = [
    ("wallet-credit-amount", "POST", f"{PROJECT}/wallet/credit", lambda v: {"amount": v, "reason": "r"}, "amount", True),
    ("wallet-debit-amount", "POST", f"{PROJECT}/wallet/debit", lambda v: {"amount": v, "reason": "r"}, "amount", True),
    ("reserve-quantity", "POST", RESERVE, lambda v: _reservation(quantity=v), "quantity", True),
    ("reserve-amount", "POST", RESERVE, lambda v: _reservation(amount=v), "amount", True),
    ("reserve-hourly-cost", "POST", RESERVE, _by_hourly_cost, "hourly_cost", True),
    ("commit-amount", "POST", RESERVE + "/{reservation}/commit", lambda v: {"amount": v}, "amount", False),
    ("check-quantity", "POST", "/api/v1/admission/check", lambda v: _reservation(quantity=v), "quantity", False),
    ("check-amount", "POST", "/api/v1/admission/check", lambda v: _reservation(amount=v), "amount", False),
    ("check-hourly-cost", "POST", "/api/v1/admission/check", _by_hourly_cost, "hourly_cost", False),
    ("quota-limit", "PUT", f"{PROJECT}/quotas/vm", lambda v: {"limit": v}, "limit", False),
    ("quota-release-quantity", "POST", f"{PROJECT}/quotas/vm/release", lambda v: {"quantity": v}, "quantity", True),
    ("budget-hard-limit", "PUT", f"{PROJECT}/budget", lambda v: {"hard_limit": v}, "hard_limit", False),
    ("budget-soft-limit", "PUT", f"{PROJECT}/budget", lambda v: {"hard_limit": "10", "soft_limit": v}, "soft_limit", False),
    ("checkout-amount", "POST", f"{PROJECT}/checkout-sessions", lambda v: {"amount": v}, "amount", True),
]


@pytest.fixture
def world(fake_stripe):
    """acme with 100 credits, one pending reservation to commit, and a platform key."""
    clear_caches()
    client = ServiceClient(platform_key())
    ProjectFactory(slug="acme", balance="100")
    response = client.post_idem(RESERVE, _reservation())
    assert response.status_code == 201, response.json()
    yield client, response.json()["id"]
    clear_caches()


def _send(client: ServiceClient, method: str, path: str, body: dict, with_key: bool):
    headers = {"HTTP_IDEMPOTENCY_KEY": "grammar"} if with_key else {}
    send = client.put if method == "PUT" else client.post
    return send(path, json.dumps(body), content_type="application/json", **headers)


@pytest.mark.parametrize(("method", "path", "body", "field", "with_key"), [pytest.param(*f[1:], id=f[0]) for f in FIELDS])
def test_an_amount_or_quantity_outside_the_grammar_is_a_400_that_writes_nothing(world, method, path, body, field,
                                                                                  with_key):
    client, reservation_id = world
    before = money_snapshot()
    for value in NOT_AMOUNTS:
        response = _send(client, method, path.replace("{reservation}", str(reservation_id)), body(value), with_key)
        assert response.status_code == 400, (value, response.content)
        answer = response.json()
        assert answer["error"] == "validation_error"
        assert answer["detail"] == {field: [DECIMAL_FORM_MESSAGE]}, value
        assert money_snapshot() == before, value


def test_a_usage_event_quantity_outside_the_grammar_is_that_events_rejection(world):
    client, _ = world
    now = timezone.now().isoformat()
    events = [{"id": f"bad-{i}", "project": "acme", "resource_type": "vm", "quantity": value, "timestamp": now}
              for i, value in enumerate(NOT_AMOUNTS)]
    events.append({"id": "good", "project": "acme", "resource_type": "vm", "quantity": "0.5", "timestamp": now})
    body = client.post("/api/v1/usage/events", json.dumps({"events": events}), content_type="application/json").json()
    assert (body["accepted"], body["rejected"]) == (1, len(NOT_AMOUNTS))
    for result in body["results"][:-1]:
        assert (result["status"], result["reason"]) == ("rejected", "invalid_event")
        assert DECIMAL_FORM_MESSAGE in result["detail"]
    assert list(UsageEvent.objects.values_list("event_id", flat=True)) == ["good"]


@pytest.mark.parametrize(("value", "micros"), [("12.5", 12_500_000), ("0.000001", 1), ("007", 7_000_000),
                                               ("12.500000", 12_500_000)])
def test_the_grammar_takes_plain_decimal_strings(world, value, micros):
    client, _ = world
    before = Account.objects.get(project__slug="acme").balance
    response = client.post_idem(f"{PROJECT}/wallet/credit", {"amount": value, "reason": "r"})
    assert response.status_code == 201, response.json()
    assert Account.objects.get(project__slug="acme").balance == before + micros
