"""Billing never drops a project: what a run could not charge is owed and retried until charged once."""

from datetime import timedelta

import pytest
import time_machine

from billing.models import BillingRun, Charge, OwedCharge
from billing.services import charging, owed, runs
from billing.tasks import billing_run_due
from metering.models import Price
from wallets.models import Transfer
from wallets.selectors import ledger_check
from wallets.tests.factories import ProjectFactory

from .conftest import HOUR, NOW, WINDOW
from .factories import balance, bill, resource_type, usage

pytestmark = pytest.mark.django_db


# Usage is written just after the window closed, well before the run: the next window's run then
# does not look at it again as possibly late usage, so only the owed rows can bring it to billing.
WRITTEN = WINDOW + HOUR + timedelta(minutes=1)


@pytest.fixture
def frozen():
    """Time stands still (at WRITTEN, then NOW) until moved: each beat sees exactly the time it is run at."""
    with time_machine.travel(WRITTEN, tick=False) as traveller:
        yield traveller


def _projects(frozen, count: int, code: str = "vm", quantity: str = "1"):
    projects = [ProjectFactory(slug=f"p{i}", balance="10") for i in range(count)]
    for project in projects:
        usage(project, code, WINDOW, quantity)
    frozen.move_to(NOW)
    return projects


def _break_writes(monkeypatch, project_id: int, *, failures: int | None) -> list[int]:
    """Writes of charges that include project_id raise `failures` times (None: always). Returns the call log."""
    real, calls = charging.write_charges, []

    def write_charges(*, planned, **kwargs):
        if any(p.project_id == project_id for p in planned):
            calls.append(project_id)
            if failures is None or len(calls) <= failures:
                raise RuntimeError("wallet row is locked by a long transaction")
        return real(planned=planned, **kwargs)

    monkeypatch.setattr(charging, "write_charges", write_charges)
    return calls


def _run() -> BillingRun:
    return BillingRun.objects.get(window_start=WINDOW)


def _each_charged_once_for_the_window(projects) -> None:
    for project in projects:
        assert Charge.objects.filter(project=project, window_start=WINDOW).count() == 1
    # No charge moved credits twice: one usage transfer per charge that took any.
    assert Transfer.objects.filter(kind=Transfer.Kind.USAGE).count() == Charge.objects.exclude(transfer=None).count()
    assert len({balance(p) for p in projects}) == 1
    assert ledger_check().ok


def test_a_project_that_failed_once_is_charged_exactly_once_by_the_next_beats(frozen, monkeypatch):
    projects = _projects(frozen, 3)
    bad = projects[1]
    # The batch and then the project alone fail in the run of WINDOW; after that the wallet is fine.
    _break_writes(monkeypatch, bad.id, failures=2)

    billing_run_due()
    assert _run().status == BillingRun.Status.PARTIAL
    row = OwedCharge.objects.get()
    assert (row.project_id, row.status, row.attempts) == (bad.id, OwedCharge.Status.OWED, 1)
    assert "locked by a long transaction" in row.last_error
    assert not Charge.objects.filter(project=bad).exists()

    for hours in (1, 2, 3):
        frozen.move_to(NOW + hours * HOUR)
        billing_run_due()

    run = _run()
    assert run.status == BillingRun.Status.SUCCEEDED
    assert run.charges_created == 3  # the chunk's two and the retry's one
    row.refresh_from_db()
    assert (row.status, row.charges_created) == (OwedCharge.Status.CHARGED, 1)
    _each_charged_once_for_the_window(projects)
    # The later windows were billed as usual by the same beats.
    assert BillingRun.objects.filter(status=BillingRun.Status.SUCCEEDED).count() == 4


def test_a_permanent_failure_stays_owed_visible_and_is_retried_with_back_off(frozen, monkeypatch, settings):
    settings.BILLING_RETRY_FIRST_SECONDS, settings.BILLING_RETRY_MAX_SECONDS = 1800, 6 * 3600
    settings.BILLING_RETRY_ATTEMPTS_CAP = 6
    projects = _projects(frozen, 2)
    bad = projects[0]
    _break_writes(monkeypatch, bad.id, failures=None)

    billing_run_due()
    attempts = []
    for hours in range(1, 9):  # hourly beats; the waits double: 30 min, 1 h, 2 h, 4 h, ...
        frozen.move_to(NOW + hours * HOUR)
        billing_run_due()
        attempts.append(OwedCharge.objects.get().attempts)
        assert _run().status == BillingRun.Status.PARTIAL

    assert attempts == [2, 3, 3, 4, 4, 4, 4, 5]
    assert not Charge.objects.filter(project=bad).exists()
    assert Charge.objects.filter(project=projects[1]).count() == 1

    # Once the wallet is fixed, the next due retry charges it, once.
    monkeypatch.undo()
    frozen.move_to(OwedCharge.objects.get().next_retry_at)
    billing_run_due()
    assert OwedCharge.objects.get().status == OwedCharge.Status.CHARGED
    assert _run().status == BillingRun.Status.SUCCEEDED
    _each_charged_once_for_the_window(projects)


def test_the_back_off_doubles_up_to_the_maximum_and_stays_there_past_the_cap(settings):
    settings.BILLING_RETRY_FIRST_SECONDS, settings.BILLING_RETRY_MAX_SECONDS = 1800, 6 * 3600
    settings.BILLING_RETRY_ATTEMPTS_CAP = 6
    waits = [owed.retry_delay(n).total_seconds() / 60 for n in range(1, 10)]
    assert waits == [30, 60, 120, 240, 360, 360, 360, 360, 360]


def test_a_failed_chunk_is_owed_as_its_range_and_charged_by_a_retry(frozen, monkeypatch, settings):
    settings.BILLING_CHUNK_SIZE = 2
    projects = _projects(frozen, 4)
    real, calls = runs.charge_chunk, []

    def second_chunk_fails_once(**kwargs):
        calls.append(kwargs["first_project_id"])
        if len(calls) == 2:
            raise ConnectionError("database went away")
        return real(**kwargs)

    monkeypatch.setattr(runs, "charge_chunk", second_chunk_fails_once)
    billing_run_due()
    row = OwedCharge.objects.get()
    assert (row.first_project_id, row.last_project_id, row.project_id) == (projects[2].id, projects[3].id, None)
    assert _run().status == BillingRun.Status.PARTIAL

    frozen.move_to(NOW + HOUR)
    billing_run_due()
    row.refresh_from_db()
    assert (row.status, row.charges_created) == (OwedCharge.Status.CHARGED, 2)
    assert _run().status == BillingRun.Status.SUCCEEDED
    _each_charged_once_for_the_window(projects)


def test_many_failing_projects_of_a_chunk_are_owed_as_one_range(frozen, monkeypatch):
    monkeypatch.setattr(owed, "OWED_PROJECTS_PER_CHUNK", 1)
    projects = _projects(frozen, 3, "network_egress_gib", "10")
    egress = resource_type("network_egress_gib")
    # A per-second price on a counted resource: every project of the type fails with unit_mismatch.
    Price.objects.filter(resource_type=egress).update(effective_to=WINDOW)
    wrong = Price.objects.create(resource_type=egress, unit_price=Price.objects.filter(resource_type=egress).first().unit_price,
                                 per=Price.Per.UNIT_SECOND, effective_from=WINDOW)

    billing_run_due()
    row = OwedCharge.objects.get()
    assert (row.first_project_id, row.last_project_id) == (projects[0].id, projects[2].id)
    assert "3 projects could not be charged" in row.last_error and "unit_mismatch" in row.last_error

    frozen.move_to(NOW + HOUR)
    billing_run_due()
    row.refresh_from_db()
    assert (row.status, row.attempts) == (OwedCharge.Status.OWED, 2)  # still wrong: still owed

    wrong.per = Price.Per.UNIT  # staff put the price right
    wrong.save()
    frozen.move_to(row.next_retry_at)
    billing_run_due()
    row.refresh_from_db()
    assert row.status == OwedCharge.Status.CHARGED
    assert _run().status == BillingRun.Status.SUCCEEDED
    assert Charge.objects.filter(window_start=WINDOW).count() == 3


def test_a_range_retry_that_fails_for_a_few_projects_owes_them_one_by_one(frozen, monkeypatch, settings):
    settings.BILLING_CHUNK_SIZE = 5000
    projects = _projects(frozen, 3)
    real, calls = runs.charge_chunk, []

    def chunk_fails_once(**kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("database went away")
        return real(**kwargs)

    monkeypatch.setattr(runs, "charge_chunk", chunk_fails_once)
    billing_run_due()
    chunk_row = OwedCharge.objects.get()
    assert chunk_row.project_id is None and chunk_row.attempts == 1

    _break_writes(monkeypatch, projects[1].id, failures=None)
    frozen.move_to(NOW + HOUR)
    billing_run_due()
    chunk_row.refresh_from_db()
    assert chunk_row.status == OwedCharge.Status.SPLIT
    project_row = OwedCharge.objects.get(status=OwedCharge.Status.OWED)
    assert project_row.project_id == projects[1].id
    assert project_row.attempts == 2  # the back-off goes on from the chunk's
    assert _run().status == BillingRun.Status.PARTIAL
    assert Charge.objects.filter(window_start=WINDOW).count() == 2


def test_a_rerun_of_the_window_settles_what_it_owed(frozen, monkeypatch):
    projects = _projects(frozen, 3)
    _break_writes(monkeypatch, projects[0].id, failures=2)
    assert bill(WINDOW).run.status == BillingRun.Status.PARTIAL
    assert bill(WINDOW).run.status == BillingRun.Status.SUCCEEDED
    assert OwedCharge.objects.get().status == OwedCharge.Status.CHARGED
    _each_charged_once_for_the_window(projects)


def test_a_rerun_that_fails_again_counts_one_more_attempt(frozen, monkeypatch):
    projects = _projects(frozen, 2)
    _break_writes(monkeypatch, projects[0].id, failures=None)
    bill(WINDOW)
    bill(WINDOW)
    row = OwedCharge.objects.get()
    assert (row.status, row.attempts) == (OwedCharge.Status.OWED, 2)
    assert _run().status == BillingRun.Status.PARTIAL


def test_a_window_whose_run_failed_is_billed_by_a_later_beat_even_after_later_windows(frozen, monkeypatch):
    projects = _projects(frozen, 2)
    real, calls = runs.billing_run_plan, []

    def plan_fails_once(*, run):
        calls.append(run.window_start)
        if len(calls) == 1:
            raise ConnectionError("database went away")
        return real(run=run)

    monkeypatch.setattr(runs, "billing_run_plan", plan_fails_once)
    messages = billing_run_due()  # one failing window does not stop the beat
    assert "failed" in messages[0]
    assert _run().status == BillingRun.Status.FAILED

    frozen.move_to(NOW + HOUR)
    bill(WINDOW + HOUR)  # staff bill the next window by hand first: the failed one must not be skipped
    billing_run_due()
    assert _run().status == BillingRun.Status.SUCCEEDED
    _each_charged_once_for_the_window(projects)


def test_a_finished_run_is_partial_exactly_while_it_owes(frozen, monkeypatch):
    _projects(frozen, 2)
    run = bill(WINDOW).run
    assert owed.billing_runs_settle() == 0
    OwedCharge.objects.create(run=run, first_project_id=1, last_project_id=1, attempts=1)
    assert owed.billing_runs_settle() == 1
    assert _run().status == BillingRun.Status.PARTIAL
    OwedCharge.objects.update(status=OwedCharge.Status.CHARGED)
    owed.billing_runs_settle()
    assert _run().status == BillingRun.Status.SUCCEEDED


def test_runs_left_partial_before_owed_billing_owe_what_their_last_attempt_failed(frozen, monkeypatch):
    import importlib

    from django.apps import apps

    projects = _projects(frozen, 3)
    _break_writes(monkeypatch, projects[1].id, failures=None)
    billing_run_due()
    OwedCharge.objects.all().delete()  # as a run left partial before the migration

    importlib.import_module("billing.migrations.0007_owed_charge").owe_what_partial_runs_failed(apps, None)
    row = OwedCharge.objects.get()
    assert (row.project_id, row.status) == (projects[1].id, OwedCharge.Status.OWED)

    monkeypatch.undo()
    billing_run_due()  # due at once
    assert _run().status == BillingRun.Status.SUCCEEDED
    _each_charged_once_for_the_window(projects)
