"""A window whose quantity × rate is beyond one amount is owed and shown, never a crash of the run."""

import pytest

from billing.models import BillingRun, Charge, OwedCharge
from creditservice.lib.money import MAX_RATE_PICOS
from metering.models import Price
from metering.services import price_version_add
from wallets.selectors import ledger_check
from wallets.tests.factories import ProjectFactory

from .conftest import WINDOW
from .factories import balance, bill, resource_type, usage

pytestmark = pytest.mark.django_db


def test_a_charge_beyond_one_amount_is_owed_and_the_other_projects_are_charged(clock):
    acme, beta = ProjectFactory(slug="acme", balance="100"), ProjectFactory(slug="beta", balance="100")
    # The largest price per vm-hour (10^6 credits) for 10^12 vm-hours: 10^18 credits, past any column.
    price_version_add(resource_type=resource_type("vm"), unit_price=MAX_RATE_PICOS, per=Price.Per.UNIT_HOUR,
                      effective_from=WINDOW)
    usage(acme, "vm", WINDOW, "1000000000000")
    usage(beta, "vm", WINDOW, "0.000001")  # 1 credit

    run = bill(WINDOW).run

    assert run.status == BillingRun.Status.PARTIAL
    assert list(Charge.objects.values_list("project__slug", "amount")) == [("beta", 1_000_000)]
    assert balance(acme) == 100_000_000
    owed = OwedCharge.objects.get()
    assert (owed.first_project_id, owed.last_project_id) == (acme.id, acme.id)
    assert "amount_limit_exceeded" in owed.last_error or "amount_limit_exceeded" in str(owed.failures)
    assert ledger_check().ok
