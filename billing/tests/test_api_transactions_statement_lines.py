"""A statement line explains itself: a usage charge or credit-back in GET /projects/{slug}/transactions
and in the portal says its resource type, window, quantity with unit and rate, read from its charge."""

from datetime import timedelta

import pytest

from wallets.tests.factories import ProjectFactory, fund, member

from .conftest import HOUR, WINDOW
from .factories import bill, usage

pytestmark = pytest.mark.django_db

TRANSACTIONS = "/api/v1/projects/acme/transactions"


def test_a_usage_charge_line_says_what_it_was_for(clock, platform):
    acme = ProjectFactory(slug="acme", balance="100")
    usage(acme, "vm", WINDOW, "2.5")
    bill(WINDOW)
    charge_line = platform.get(TRANSACTIONS).json()["results"][0]
    assert (charge_line["kind"], charge_line["amount"], charge_line["reference"]) == ("usage", "-0.1", "charge")
    assert charge_line["charge"] == {
        "id": charge_line["charge"]["id"], "kind": "regular", "resource_type": "vm",
        "window_start": "2026-11-22T04:00:00Z", "window_end": "2026-11-22T05:00:00Z",
        "quantity": "2.5", "unit": "vm-hours", "rate": "0.04",
    }
    assert charge_line["description"] == (
        "Usage of Virtual machine (vm), 2026-11-22 04:00–05:00 UTC: 2.5 vm-hours × 0.04 credits per vm-hour")
    funding_line = platform.get(TRANSACTIONS).json()["results"][1]
    assert (funding_line["charge"], funding_line["description"]) == (None, "test funding")


def test_a_credit_back_line_says_what_it_gave_back(clock, platform):
    acme = ProjectFactory(slug="acme", balance="100")
    usage(acme, "vm", WINDOW, "2.5")
    bill(WINDOW)
    clock.move_to(WINDOW + 2 * HOUR + timedelta(minutes=30))
    usage(acme, "vm", WINDOW, "2")  # re-collected lower after it was billed
    bill(WINDOW + HOUR)
    line = platform.get(TRANSACTIONS).json()["results"][0]
    assert (line["kind"], line["amount"]) == ("reversal", "0.02")
    assert (line["charge"]["kind"], line["charge"]["quantity"]) == ("reversal", "-0.5")
    assert line["description"].startswith("Usage credit-back of Virtual machine (vm), 2026-11-22 04:00–05:00 UTC: "
                                          "0.5 vm-hours")


def test_a_page_of_lines_is_explained_in_a_bounded_number_of_queries(clock, platform, django_assert_max_num_queries):
    acme = ProjectFactory(slug="acme", balance="100")
    for hours in range(6):
        for code in ("vm", "vcpu", "memory_gib"):
            usage(acme, code, WINDOW - hours * HOUR, "1")
    for hours in reversed(range(6)):
        bill(WINDOW - hours * HOUR)
    platform.get(TRANSACTIONS)  # warm the key cache
    with django_assert_max_num_queries(8):
        body = platform.get(f"{TRANSACTIONS}?page_size=20").json()
    assert len(body["results"]) == 19 and all(line["charge"] for line in body["results"][:18])


def test_the_portal_statement_explains_usage_and_shows_burn_rate_and_runway(clock, client):
    acme = ProjectFactory(slug="acme", balance="1")
    usage(acme, "vm", WINDOW, "2.5")
    bill(WINDOW)
    fund(acme, "0.1")
    client.force_login(member(acme))
    html = client.get("/portal/acme/").content.decode()
    assert "Usage of Virtual machine (vm), 2026-11-22 04:00–05:00 UTC: 2.5 vm-hours × 0.04 credits per vm-hour" in html
    # The same burn rate and runway as GET /projects/{slug}/wallet.
    api = platform_wallet(acme)
    assert api["burn_rate_per_hour"] != "0" and api["runway_hours"] is not None
    assert f'data-testid="burn-rate">{api["burn_rate_per_hour"]} ' in html
    assert f'data-testid="runway">{api["runway_hours"]} ' in html


def platform_wallet(project) -> dict:
    from creditservice.testing.fixtures import ServiceClient
    from wallets.tests.factories import platform_key

    return ServiceClient(platform_key()).get(f"/api/v1/projects/{project.slug}/wallet").json()
