"""Reservations never overflow a column: the hold hourly_cost × hours, the sum of a type's holds and
the TTL are bounded."""

import pytest

from creditservice.lib.money import MAX_AMOUNT_MICROS, MAX_QUANTITY_MICROS, format_amount, format_micros
from quotas.models import Quota, Reservation
from quotas.tests.helpers import CHECK, counts, ledger_is_consistent, reserve, wallet
from wallets.models import Project
from wallets.tests.factories import ProjectFactory, fund

pytestmark = pytest.mark.django_db

MAX = format_amount(MAX_AMOUNT_MICROS)


@pytest.fixture
def rich(db) -> Project:
    """acme with one maximal amount available."""
    project = ProjectFactory(slug="acme", balance=MAX)
    return project


def test_an_hourly_cost_whose_hold_overflows_bigint_is_a_400_not_a_500(platform, rich):
    # 400000000000 credits × 24 h = 9.6 × 10^18 micro-credits: past a signed 64-bit column.
    response = reserve(platform, amount=None, hourly_cost="400000000000")
    assert response.status_code == 400, response.content
    assert response.json()["error"] == "validation_error"
    assert "hourly_cost" in response.json()["detail"]
    assert counts() == (0, 1)  # no reservation; the one transfer is the funding
    assert wallet(platform)["reserved"] == "0"
    check = platform.post(CHECK, {"project": "acme", "resource_type": "vm", "quantity": "1",
                                  "hourly_cost": "400000000000"}, format="json")
    assert check.status_code == 400 and "hourly_cost" in check.json()["detail"]


def test_an_hourly_cost_at_the_bound_is_held(platform, rich):
    hourly = format_amount(MAX_AMOUNT_MICROS // 24)
    response = reserve(platform, amount=None, hourly_cost=hourly)
    assert response.status_code == 201, response.json()
    assert response.json()["amount"] == format_amount(MAX_AMOUNT_MICROS // 24 * 24)
    over = reserve(platform, amount=None, hourly_cost=format_amount(MAX_AMOUNT_MICROS // 24 + 1))
    assert over.status_code == 400
    assert Reservation.objects.count() == 1
    assert ledger_is_consistent()


def test_a_project_runtime_override_cannot_overflow_the_hold(platform, rich):
    # The hold is hourly_cost × the project's own hours: refused as a 400 before any SQL once beyond the bound.
    Project.objects.filter(id=rich.id).update(min_runtime_hours=1_000_000)
    at_bound = reserve(platform, amount=None, hourly_cost="1000000")  # × 10^6 h = 10^12 credits
    assert at_bound.status_code == 201, at_bound.json()
    fund(rich, "1")
    response = reserve(platform, amount=None, hourly_cost="1000000.000001")
    assert response.status_code == 400, response.content
    assert "hourly_cost" in response.json()["detail"]
    assert Reservation.objects.count() == 1
    assert wallet(platform)["reserved"] == MAX
    assert ledger_is_consistent()


def test_the_holds_of_a_type_without_a_limit_stay_within_one_quantity(platform, project):
    # No limit on vm: without a bound, reserved kept adding up until it left the bigint column (a 500).
    most = format_micros(MAX_QUANTITY_MICROS)
    assert reserve(platform, quantity=most, amount="1").status_code == 201
    response = reserve(platform, quantity="0.000001", amount="1")
    assert response.status_code == 409, response.content
    assert response.json()["error"] == "quota_exceeded"
    assert Quota.objects.get(project=project).reserved == MAX_QUANTITY_MICROS
    check = platform.post(CHECK, {"project": "acme", "resource_type": "vm", "quantity": "0.000001", "amount": "1"},
                          format="json").json()
    assert (check["allowed"], check["reason"]) == (False, "quota_exceeded")
    assert wallet(platform)["reserved"] == "1"


@pytest.mark.parametrize("ttl", [86401, 2**63, 10**30, str(2**63), "1e3", "\u0663", True, 0])
def test_a_ttl_outside_its_bound_is_a_400(platform, project, ttl):
    response = reserve(platform, ttl_seconds=ttl)
    assert response.status_code == 400, response.content
    assert "ttl_seconds" in response.json()["detail"]
    assert counts() == (0, 1)


def test_a_ttl_at_its_bound_is_taken(platform, project):
    response = reserve(platform, ttl_seconds=86400)
    assert response.status_code == 201, response.json()
    row = Reservation.objects.get()
    assert (row.expires_at - row.created_at).total_seconds() == 86400
