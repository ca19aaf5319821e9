"""Read-only selectors the portal uses, and the holds invariant `manage.py check_ledger` runs."""

import pytest
from django.core.management import CommandError, call_command

from quotas import selectors
from quotas.models import Budget, Quota
from quotas.tests.helpers import commit, reserve, set_quota, units
from wallets.models import Account


def test_project_quotas_lists_limit_used_and_reserved(platform, project):
    set_quota(project, "vcpu", "8")
    commit(platform, reserve(platform, resource_type="vcpu", quantity="3").json()["id"])
    reserve(platform, resource_type="vcpu", quantity="1.5")
    [row] = selectors.project_quotas(project)
    assert (row.resource_type, row.resource, row.unit) == ("vcpu", "vCPU", "vCPU")
    assert (row.limit, row.used, row.reserved, row.available) == (units("8"), units("3"), units("1.5"), units("3.5"))


def test_budget_status_is_none_without_a_budget_and_reads_the_month_with_one(platform, project):
    assert selectors.budget_status(project) is None
    Budget.objects.create(project=project, hard_limit=100_000_000, soft_limit=10_000_000)
    reserve(platform, amount="12.5")
    status = selectors.budget_status(project)
    assert (status.hard_limit, status.soft_limit, status.spent, status.soft_limit_reached) == (
        100_000_000, 10_000_000, 12_500_000, True)
    assert str(status) == "12.5 of 100 credits spent or held this month (alert at 10)"


def test_check_ledger_passes_with_holds(platform, project):
    reserve(platform, resource_type="vcpu", quantity="2")
    call_command("check_ledger", verbosity=0)


def test_check_ledger_finds_a_wallet_hold_without_its_reservation(platform, project):
    reserve(platform, amount="5")
    Account.objects.filter(project=project).update(reserved=6_000_000)
    with pytest.raises(CommandError):
        call_command("check_ledger", verbosity=0)
    assert any("reserved 6000000 != 5000000" in d for d in selectors.holds_match_pending_reservations())


def test_check_ledger_finds_a_quota_hold_without_its_reservations(platform, project):
    reserve(platform, resource_type="vcpu", quantity="2")
    Quota.objects.filter(project=project).update(reserved=units("3"))
    assert any("quota vcpu" in d for d in selectors.holds_match_pending_reservations())
