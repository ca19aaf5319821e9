"""Two runs at once, on PostgreSQL with real threads: every unit of usage is charged once."""

from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from billing.models import BillingRun, Charge
from billing.services import billing_run_claim, billing_run_work, charging, runs
from creditservice.lib.money import credits_to_micros
from wallets.models import Account, Transfer
from wallets.selectors import ledger_check
from wallets.tests.factories import ProjectFactory

from .conftest import HOUR, WINDOW
from .factories import bill, usage

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _shipped(shipped_data):
    shipped_data()


def _projects_with_usage(count: int):
    projects = [ProjectFactory(slug=f"p{i}", balance="10") for i in range(count)]
    for project in projects:
        usage(project, "vm", WINDOW, "1")
        usage(project, "network_egress_gib", WINDOW, "2")
    return projects


def _in_threads(function, count: int):
    def call(i):
        try:
            return function(i)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(call, range(count)))


def _each_charged_once(projects):
    assert Charge.objects.count() == 2 * len(projects)
    assert Transfer.objects.filter(kind=Transfer.Kind.USAGE).count() == 2 * len(projects)
    balances = set(Account.objects.filter(project__in=projects).values_list("balance", flat=True))
    assert balances == {credits_to_micros("9.94")}  # 10 - 0.04 - 0.02
    assert ledger_check().ok


def test_two_runs_of_one_window_at_once_bill_it_once(clock, settings):
    settings.BILLING_CHUNK_SIZE = 3
    projects = _projects_with_usage(12)
    outcomes = _in_threads(lambda i: bill(WINDOW), 4)
    assert sum(o.claimed for o in outcomes) == 1
    assert all("already running" in o.message for o in outcomes if not o.claimed)
    _each_charged_once(projects)
    assert BillingRun.objects.get().status == BillingRun.Status.SUCCEEDED


def test_workers_share_the_chunks_of_one_run(clock, settings):
    settings.BILLING_CHUNK_SIZE = 2
    projects = _projects_with_usage(12)
    run = billing_run_claim(window_start=WINDOW, trigger="test").run
    runs.billing_run_plan(run=run)
    done = _in_threads(lambda i: billing_run_work(run_id=run.id), 4)
    assert sum(done) == 6  # every chunk taken by exactly one worker
    _each_charged_once(projects)
    run.refresh_from_db()
    assert run.status == BillingRun.Status.SUCCEEDED and run.charges_created == 24


def test_overlapping_chunk_work_without_the_run_lock_still_charges_once(clock):
    # Defence in depth: even if two workers charged the same projects at once (a takeover racing a
    # slow worker), the wallet locks and the deterministic keys let each charge through once.
    projects = _projects_with_usage(10)
    run = billing_run_claim(window_start=WINDOW, trigger="test").run
    first, last = projects[0].id, projects[-1].id
    results = _in_threads(lambda i: charging.charge_chunk(
        first_project_id=first, last_project_id=last, window_start=WINDOW, late_since=None,
        late_from=WINDOW - 48 * HOUR, run_id=run.id), 6)
    assert sum(r.charges for r in results) == 20
    assert not any(r.failures for r in results)
    _each_charged_once(projects)
