"""GET /projects/{slug}/charges and the burn rate and runway on GET /projects/{slug}/wallet."""

from datetime import timedelta

import pytest

from creditservice.testing.fixtures import ServiceClient
from wallets.tests.factories import ProjectFactory, scoped_key

from .conftest import HOUR, WINDOW
from .factories import bill, usage

pytestmark = pytest.mark.django_db


def test_charges_list_explains_each_charge(clock, platform):
    acme = ProjectFactory(slug="acme", balance="100")
    usage(acme, "vm", WINDOW, "1.5", source="prometheus")
    usage(acme, "vm", WINDOW, "0.5", source="push")
    bill(WINDOW)

    response = platform.get("/api/v1/projects/acme/charges", {"window_start": "2026-11-22T04:00:00Z"})

    assert response.status_code == 200
    (charge,) = response.json()["results"]
    assert charge["resource_type"] == "vm" and charge["kind"] == "regular"
    assert (charge["quantity"], charge["unit"], charge["rate"], charge["amount"]) == ("2", "vm-hours", "0.04", "0.08")
    assert charge["price"]["per"] == "unit_hour" and charge["price"]["unit_price"] == "0.04"
    assert sorted((r["source"], r["quantity"]) for r in charge["usage_records"]) == [("prometheus", "1.5"), ("push", "0.5")]
    assert charge["window_start"] == "2026-11-22T04:00:00Z" and charge["transfer_id"]


def test_charges_of_other_windows_are_filtered_out(clock, platform):
    acme = ProjectFactory(slug="acme", balance="100")
    usage(acme, "vm", WINDOW, "1")
    bill(WINDOW)
    response = platform.get("/api/v1/projects/acme/charges", {"window_start": (WINDOW - HOUR).isoformat()})
    assert response.json()["results"] == []


def test_another_projects_charges_are_not_found(clock):
    ProjectFactory(slug="acme", balance="100")
    other = ProjectFactory(slug="other")
    response = ServiceClient(scoped_key(other)).get("/api/v1/projects/acme/charges")
    assert response.status_code == 404


def test_an_unknown_filter_is_refused(clock, platform):
    ProjectFactory(slug="acme")
    response = platform.get("/api/v1/projects/acme/charges", {"window": "x"})
    assert response.status_code == 400 and response.json()["error"] == "validation_error"


def test_the_wallet_shows_burn_rate_and_runway(clock, platform):
    acme = ProjectFactory(slug="acme", balance="10")
    body = platform.get("/api/v1/projects/acme/wallet").json()
    assert body["burn_rate_per_hour"] == "0" and body["runway_hours"] is None

    usage(acme, "vm", WINDOW, "30")  # 1.2 credits
    usage(acme, "vm", WINDOW - HOUR, "30")
    bill(WINDOW - HOUR)
    bill(WINDOW)
    body = platform.get("/api/v1/projects/acme/wallet").json()
    assert body["available"] == "7.6"
    assert body["burn_rate_per_hour"] == "0.1"  # 2.4 credits over the last 24 h
    assert body["runway_hours"] == "76.00"


def test_charges_older_than_a_day_leave_the_burn_rate(clock, platform):
    acme = ProjectFactory(slug="acme", balance="10")
    usage(acme, "vm", WINDOW, "30")
    bill(WINDOW)
    clock.move_to(WINDOW + timedelta(hours=26))
    assert platform.get("/api/v1/projects/acme/wallet").json()["burn_rate_per_hour"] == "0"
