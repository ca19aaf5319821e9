"""A window of pushed fractional events is billed for exactly their sum, on every backend: events,
records and charges hold integer micro-units, and the charge is quantity × rate rounded once."""

from datetime import timedelta

import pytest

from billing.models import Charge
from creditservice.lib.money import charge_micros, credits_to_micros
from creditservice.testing.fixtures import ServiceClient
from metering.models import UsageRecord
from metering.tests.factories import picos, units
from wallets.selectors import ledger_check
from wallets.tests.factories import ProjectFactory, platform_key

from .conftest import WINDOW
from .factories import balance, bill

pytestmark = pytest.mark.django_db


def _push(client: ServiceClient, project: str, code: str, quantities: list[str]) -> None:
    events = [{"id": f"{project}-{code}-{i}", "project": project, "resource_type": code, "quantity": quantity,
               "timestamp": (WINDOW + timedelta(minutes=i)).isoformat()} for i, quantity in enumerate(quantities)]
    body = client.post("/api/v1/usage/events", {"events": events}, format="json").json()
    assert body["accepted"] == len(quantities), body


def test_a_usage_window_summing_fractional_events_bills_exactly(clock):
    acme = ProjectFactory(slug="acme", balance="100")
    beta = ProjectFactory(slug="beta", balance="2000000000")
    client = ServiceClient(platform_key())
    # 0.1 + 0.1 + 0.1 + 0.2 = 0.5 vm-hours; as floats 0.30000000000000004 + 0.2 …
    _push(client, "acme", "vm", ["0.1", "0.1", "0.1", "0.2"])
    # … and a sum with 16 significant digits, which a float column cannot hold: the last micro-unit of a
    # GPU-hour (1.2 credits) is worth 1.2 micro-credits.
    _push(client, "beta", "gpu", ["999999999.999999", "0.000001", "0.000001"])

    assert bill(WINDOW).run.status == "succeeded"

    assert UsageRecord.objects.get(project=acme).quantity == units("0.5")
    vm = Charge.objects.get(project=acme)
    assert (vm.quantity, vm.rate, vm.amount) == (units("0.5"), picos("0.04"), credits_to_micros("0.02"))
    gpu = Charge.objects.get(project=beta)
    assert gpu.quantity == units("1000000000.000001")
    assert gpu.amount == charge_micros(units("1000000000.000001"), picos("1.2")) == 1_200_000_000_000_001
    assert balance(acme) == credits_to_micros("99.98")
    assert balance(beta) == credits_to_micros("2000000000") - gpu.amount
    bill(WINDOW)
    assert Charge.objects.count() == 2  # nothing left over to charge again
    assert ledger_check().ok
