"""The billing run: each unit of usage charged exactly once, whatever happens to the run."""

from datetime import timedelta

import pytest

from billing.models import BillingRun, Charge
from billing.services import billing_windows_due, charging, runs
from creditservice.lib.money import credits_to_micros
from metering.models import Price
from metering.pricing import UnitMismatch, charge_for_usage
from metering.services import price_version_add
from metering.tests.factories import picos, units
from wallets.models import Transfer
from wallets.selectors import ledger_check, system_account_balance
from wallets.tests.factories import ProjectFactory

from .conftest import HOUR, WINDOW
from .factories import balance, bill, resource_type, usage

pytestmark = pytest.mark.django_db


def test_a_window_is_charged_once_per_project_and_resource_type(clock):
    acme, beta = ProjectFactory(slug="acme", balance="100"), ProjectFactory(slug="beta", balance="100")
    usage(acme, "vm", WINDOW, "3")  # 3 vm-hours at 0.04 = 0.12
    usage(acme, "network_egress_gib", WINDOW, "10")  # 10 GiB at 0.01 = 0.1
    usage(beta, "vm", WINDOW, "1.5", source="prometheus")
    usage(beta, "vm", WINDOW, "0.5", source="push")  # two sources of one window: one charge of their sum

    outcome = bill(WINDOW)

    assert outcome.claimed
    run = outcome.run
    assert run.status == BillingRun.Status.SUCCEEDED
    assert (run.charges_created, run.projects_charged, run.credits_charged) == (3, 2, credits_to_micros("0.30"))
    assert balance(acme) == credits_to_micros("99.78")
    assert balance(beta) == credits_to_micros("99.92")
    beta_vm = Charge.objects.get(project=beta)
    assert beta_vm.quantity == units("2") and beta_vm.unit == "vm-hours" and beta_vm.rate == picos("0.04")
    assert len(beta_vm.usage_record_ids) == 2
    assert beta_vm.transfer.kind == Transfer.Kind.USAGE
    assert beta_vm.idempotency_key == f"v1:billing:{beta.id}:vm:2026-11-22T04:00:00+00:00"
    assert system_account_balance("revenue") == credits_to_micros("0.30")
    assert ledger_check().ok


def test_a_charge_matches_metering_pricing(clock):
    acme = ProjectFactory(slug="acme", balance="100")
    usage(acme, "vm", WINDOW, "2.333333")
    bill(WINDOW)
    price = Price.objects.get(resource_type__code="vm")
    assert Charge.objects.get().amount == charge_for_usage(units("2.333333"), resource_type("vm"), price)


def test_running_a_window_again_charges_nothing(clock):
    acme = ProjectFactory(slug="acme", balance="100")
    usage(acme, "vm", WINDOW, "3")
    bill(WINDOW)
    again = bill(WINDOW)
    assert again.claimed and again.run.status == BillingRun.Status.SUCCEEDED
    assert again.run.attempt == 2
    assert balance(acme) == credits_to_micros("99.88")
    assert Charge.objects.count() == 1 and Transfer.objects.filter(kind=Transfer.Kind.USAGE).count() == 1


def test_usage_may_take_the_balance_below_zero(clock):
    acme = ProjectFactory(slug="acme", balance="0.1")
    usage(acme, "vm", WINDOW, "5")  # 0.2 credits
    bill(WINDOW)
    assert balance(acme) == credits_to_micros("-0.1")
    assert ledger_check().ok


def test_late_usage_is_charged_once_as_an_adjustment_of_its_window(clock):
    acme = ProjectFactory(slug="acme", balance="100")
    usage(acme, "vm", WINDOW, "3")
    bill(WINDOW)
    clock.move_to(WINDOW + 2 * HOUR + timedelta(minutes=30))
    usage(acme, "vm", WINDOW, "4")  # a late event: the window grew by 1 vm-hour after it was billed
    usage(acme, "vm", WINDOW + HOUR, "1")

    bill(WINDOW + HOUR)
    bill(WINDOW + HOUR)  # a re-run finds nothing more to charge

    adjustment = Charge.objects.get(kind=Charge.Kind.LATE_ADJUSTMENT)
    assert adjustment.window_start == WINDOW
    assert (adjustment.quantity, adjustment.previously_charged_quantity, adjustment.window_quantity) == (
        units("1"), units("3"), units("4"))
    assert adjustment.amount == credits_to_micros("0.04")
    assert adjustment.idempotency_key.endswith(":adj:3")
    assert Charge.objects.count() == 3
    assert balance(acme) == credits_to_micros("99.80")  # (4 + 1) vm-hours at 0.04


def test_usage_that_comes_back_lower_is_credited_back_once(clock):
    acme = ProjectFactory(slug="acme", balance="100")
    usage(acme, "vm", WINDOW, "3")
    bill(WINDOW)
    clock.move_to(WINDOW + 2 * HOUR + timedelta(minutes=30))
    usage(acme, "vm", WINDOW, "2.5")  # the window was re-collected lower after it was billed

    bill(WINDOW + HOUR)
    bill(WINDOW + HOUR)  # a re-run gives nothing back twice

    reversal = Charge.objects.get(kind=Charge.Kind.REVERSAL)
    assert reversal.window_start == WINDOW
    assert (reversal.quantity, reversal.previously_charged_quantity, reversal.window_quantity) == (
        -units("0.5"), units("3"), units("2.5"))
    assert reversal.amount == -credits_to_micros("0.02")
    transfer = reversal.transfer
    assert transfer.kind == Transfer.Kind.REVERSAL and transfer.amount == credits_to_micros("0.02")
    assert transfer.credit_account.project_id == acme.id and transfer.debit_account.code == "revenue"
    assert balance(acme) == credits_to_micros("99.90")  # pays for the 2.5 vm-hours recorded, at 0.04
    assert system_account_balance("revenue") == credits_to_micros("0.10")
    assert BillingRun.objects.get(window_start=WINDOW + HOUR).failures == []
    assert ledger_check().ok


def test_usage_that_goes_down_and_up_again_is_always_charged_for_the_recorded_total(clock):
    acme = ProjectFactory(slug="acme", balance="100")
    usage(acme, "vm", WINDOW, "3")
    bill(WINDOW)
    for hour, quantity in enumerate(["2", "3", "2", "3.000001"], start=1):
        clock.move_to(WINDOW + (hour + 1) * HOUR + timedelta(minutes=30))
        usage(acme, "vm", WINDOW, quantity)
        bill(WINDOW + hour * HOUR)
        bill(WINDOW + hour * HOUR)

    # Every change of the recorded total is a new state with its own key: none is mistaken for a repeat.
    kinds = list(Charge.objects.order_by("id").values_list("kind", flat=True))
    assert kinds == ["regular", "reversal", "late_adjustment", "reversal", "late_adjustment"]
    assert len({charge.idempotency_key for charge in Charge.objects.all()}) == 5
    # 3.000001 vm-hours at 0.04, rounded once: the last adjustment takes 0.04 back (the 0.00000004 rounds away).
    assert balance(acme) == 100_000_000 - charge_for_usage(units("3.000001"), resource_type("vm"),
                                                           Price.objects.get(resource_type__code="vm"))
    assert sum(Charge.objects.values_list("amount", flat=True)) == credits_to_micros("100") - balance(acme)
    assert ledger_check().ok


def test_a_credit_back_that_funds_a_project_in_grace_reactivates_it(clock, django_capture_on_commit_callbacks):
    acme = ProjectFactory(slug="acme", balance="0.1")
    usage(acme, "vm", WINDOW, "5")  # 0.2 credits: the balance goes to -0.1 and the project into grace
    bill(WINDOW)
    acme.refresh_from_db()
    assert acme.status == "grace"
    clock.move_to(WINDOW + 2 * HOUR + timedelta(minutes=30))
    usage(acme, "vm", WINDOW, "1")  # re-collected: it really ran 1 vm-hour (0.04)

    with django_capture_on_commit_callbacks(execute=True):
        bill(WINDOW + HOUR)

    assert balance(acme) == credits_to_micros("0.06")
    acme.refresh_from_db()
    assert acme.status == "active"


def test_a_price_change_inside_a_window_is_split_and_rounded_once(clock):
    acme = ProjectFactory(slug="acme", balance="100")
    price_version_add(resource_type=resource_type("vm"), unit_price=picos("0.1"), per=Price.Per.UNIT_HOUR,
                      effective_from=WINDOW + timedelta(minutes=30))
    usage(acme, "vm", WINDOW, "0.000001")  # half at 0.04, half at 0.1 → 0.07 per vm-hour
    usage(acme, "vm", WINDOW - HOUR, "2")
    bill(WINDOW - HOUR)
    bill(WINDOW)

    before, during = Charge.objects.order_by("window_start")
    assert before.amount == credits_to_micros("0.08")
    assert during.rate == picos("0.07")
    assert [segment["unit_price"] for segment in during.price_breakdown] == ["0.04", "0.1"]
    # 0.000001 vm-hours × 0.07 = 0.00000007 credits: nothing to take, but the usage is recorded as charged.
    assert during.amount == 0 and during.transfer is None


def test_a_split_window_rounds_the_sum_not_each_segment(clock):
    acme = ProjectFactory(slug="acme", balance="100")
    vm = resource_type("vm")
    price_version_add(resource_type=vm, unit_price=picos("0.000001"), per=Price.Per.UNIT_HOUR, effective_from=WINDOW)
    price_version_add(resource_type=vm, unit_price=picos("0.000001"), per=Price.Per.UNIT_HOUR,
                      effective_from=WINDOW + timedelta(minutes=30))
    usage(acme, "vm", WINDOW, "1")
    bill(WINDOW)
    charge = Charge.objects.get()
    # Each half is 0.5 micro-credits: rounded per segment that would be 1 + 1 = 2; rounded once it is 1.
    assert charge.amount == 1
    assert len(charge.price_breakdown) == 2


def test_a_price_in_the_wrong_unit_is_refused_and_the_rest_is_charged(clock):
    acme = ProjectFactory(slug="acme", balance="100")
    egress = resource_type("network_egress_gib")
    # A per-second price on a counted resource cannot come through the admin; put it in directly.
    Price.objects.filter(resource_type=egress).update(effective_to=WINDOW)
    Price.objects.create(resource_type=egress, unit_price=picos("0.01"), per=Price.Per.UNIT_SECOND, effective_from=WINDOW)
    usage(acme, "network_egress_gib", WINDOW, "10")
    usage(acme, "vm", WINDOW, "1")

    run = bill(WINDOW).run

    assert run.status == BillingRun.Status.PARTIAL
    assert [c.resource_type.code for c in Charge.objects.all()] == ["vm"]
    assert run.failures[0]["reason"].startswith("unit_mismatch")
    assert balance(acme) == credits_to_micros("99.96")


def test_a_per_second_price_on_hours_is_converted_not_misread(clock):
    acme = ProjectFactory(slug="acme", balance="100")
    Price.objects.filter(resource_type__code="vm").update(effective_to=WINDOW)
    Price.objects.create(resource_type=resource_type("vm"), unit_price=picos("0.00001"), per=Price.Per.UNIT_SECOND,
                         effective_from=WINDOW)
    usage(acme, "vm", WINDOW, "1")  # 1 vm-hour = 3600 vm-seconds at 0.00001 = 0.036, not 0.00001
    bill(WINDOW)
    assert Charge.objects.get().amount == credits_to_micros("0.036")


def test_unit_mismatch_is_refused_by_the_rate_adapter(db):
    from billing.rates import window_rate

    egress = resource_type("network_egress_gib")
    Price.objects.filter(resource_type=egress).update(effective_to=WINDOW)
    Price.objects.create(resource_type=egress, unit_price=picos("1"), per=Price.Per.UNIT_HOUR, effective_from=WINDOW)
    with pytest.raises(UnitMismatch):
        window_rate(egress, WINDOW, WINDOW + HOUR)


def test_a_failing_project_does_not_stop_the_others(clock, monkeypatch):
    projects = [ProjectFactory(slug=f"p{i}", balance="10") for i in range(3)]
    for project in projects:
        usage(project, "vm", WINDOW, "1")
    bad = projects[1].id
    real = charging.ledger.transfer_many

    def transfer_many(**kwargs):
        if any(t.project_id == bad for t in kwargs["transfers"]):
            raise RuntimeError("wallet row is corrupt")
        return real(**kwargs)

    monkeypatch.setattr(charging.ledger, "transfer_many", transfer_many)
    run = bill(WINDOW).run

    assert run.status == BillingRun.Status.PARTIAL
    assert [f["project_id"] for f in run.failures] == [bad]
    assert "wallet row is corrupt" in run.failures[0]["reason"]
    assert sorted(Charge.objects.values_list("project_id", flat=True)) == sorted(p.id for p in projects if p.id != bad)

    monkeypatch.setattr(charging.ledger, "transfer_many", real)
    assert bill(WINDOW).run.status == BillingRun.Status.SUCCEEDED  # the re-run charges the one left
    assert Charge.objects.count() == 3


def test_a_charge_another_worker_writes_after_planning_is_not_taken_twice(clock, monkeypatch):
    projects = [ProjectFactory(slug=f"p{i}", balance="10") for i in range(3)]
    for project in projects:
        usage(project, "vm", WINDOW, "1")
    real = charging.write_charges

    def race_then_write(*, planned, run_id, known_new=False):
        if known_new:  # the batch: another worker charges the first project between plan and write
            real(planned=planned[:1], run_id=run_id)
        return real(planned=planned, run_id=run_id, known_new=known_new)

    monkeypatch.setattr(charging, "write_charges", race_then_write)
    run = bill(WINDOW).run

    assert run.status == BillingRun.Status.SUCCEEDED
    assert Charge.objects.count() == 3 and Transfer.objects.filter(kind=Transfer.Kind.USAGE).count() == 3
    assert [balance(p) for p in projects] == [credits_to_micros("9.96")] * 3
    assert ledger_check().ok


class _WorkerKilled(BaseException):
    """Stands for the process dying: not an Exception, so nothing in the run catches it."""


def test_a_crash_half_way_is_resumed_without_charging_twice(clock, monkeypatch, settings):
    settings.BILLING_CHUNK_SIZE = 1
    projects = [ProjectFactory(slug=f"p{i}", balance="10") for i in range(4)]
    for project in projects:
        usage(project, "vm", WINDOW, "1")
    real, calls = runs.charge_chunk, []

    def dies_on_the_third_chunk(**kwargs):
        calls.append(kwargs["first_project_id"])
        if len(calls) == 3:
            raise _WorkerKilled
        return real(**kwargs)

    monkeypatch.setattr(runs, "charge_chunk", dies_on_the_third_chunk)
    with pytest.raises(_WorkerKilled):
        bill(WINDOW)
    assert Charge.objects.count() == 2
    assert BillingRun.objects.get().status == BillingRun.Status.RUNNING

    # Another worker at once: the run looks alive, so it leaves (and says so).
    loser = bill(WINDOW)
    assert not loser.claimed and "already running" in loser.message

    # After the lease the run is taken over and finished; the two charged projects are not charged again.
    clock.move_to(NOW_PLUS_LEASE(settings))
    resumed = bill(WINDOW)
    assert resumed.claimed and resumed.run.status == BillingRun.Status.SUCCEEDED
    assert resumed.run.charges_created == 4
    assert Charge.objects.count() == 4
    assert all(balance(p) == credits_to_micros("9.96") for p in projects)
    assert ledger_check().ok


def NOW_PLUS_LEASE(settings):
    from .conftest import NOW

    return NOW + timedelta(seconds=settings.BILLING_RUN_LEASE_SECONDS + 60)


def test_an_error_half_way_fails_the_chunk_and_a_rerun_completes(clock, monkeypatch, settings):
    settings.BILLING_CHUNK_SIZE = 1
    projects = [ProjectFactory(slug=f"p{i}", balance="10") for i in range(3)]
    for project in projects:
        usage(project, "vm", WINDOW, "1")
    real, calls = runs.charge_chunk, []

    def fails_once(**kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise ConnectionError("database went away")
        return real(**kwargs)

    monkeypatch.setattr(runs, "charge_chunk", fails_once)
    first = bill(WINDOW).run
    assert first.status == BillingRun.Status.PARTIAL and "database went away" in first.error
    assert Charge.objects.count() == 2
    assert bill(WINDOW).run.status == BillingRun.Status.SUCCEEDED
    assert Charge.objects.count() == 3


def test_a_window_that_has_not_closed_is_refused(clock):
    with pytest.raises(ValueError):
        bill(WINDOW + HOUR)


def test_windows_due_catch_up_after_a_stopped_beat(clock):
    assert billing_windows_due() == [WINDOW]
    ProjectFactory(slug="acme", balance="1")
    bill(WINDOW - 3 * HOUR)
    assert billing_windows_due() == [WINDOW - 2 * HOUR, WINDOW - HOUR, WINDOW]


def test_the_hourly_beat_bills_due_windows(clock):
    from billing.tasks import billing_run_due

    acme = ProjectFactory(slug="acme", balance="100")
    usage(acme, "vm", WINDOW, "1")
    billing_run_due()
    assert BillingRun.objects.get().status == BillingRun.Status.SUCCEEDED
    assert balance(acme) == credits_to_micros("99.96")


def test_the_schedules_are_registered_with_celery_beat(db):
    from django_celery_beat.models import PeriodicTask

    tasks = dict(PeriodicTask.objects.filter(task__startswith="billing.").values_list("task", "enabled"))
    assert tasks == {"billing.tasks.billing_run_due": True, "billing.tasks.lifecycle_sweep": True,
                     "billing.tasks.webhook_deliveries_due": True, "billing.tasks.alerts_sweep": True}


def test_run_billing_command_prints_progress_and_a_summary(clock):
    from io import StringIO

    from django.core.management import call_command

    acme = ProjectFactory(slug="acme", balance="100")
    usage(acme, "vm", WINDOW, "1")
    out = StringIO()
    call_command("run_billing", "--window-start", "2026-11-22T04:00:00Z", stdout=out)
    text = out.getvalue()
    assert "chunk 0" in text and "succeeded: 1 charges, 1 projects, 0.04 credits" in text
    out = StringIO()
    call_command("run_billing", stdout=out)  # default: the last closed window, the same one
    assert "succeeded: 1 charges" in out.getvalue()  # totals of the window; nothing new was charged
    assert Charge.objects.count() == 1 and balance(acme) == credits_to_micros("99.96")


def test_a_parallel_run_hands_chunks_to_celery_workers(clock, settings):
    settings.BILLING_CHUNK_SIZE = 1
    projects = [ProjectFactory(slug=f"p{i}", balance="10") for i in range(3)]
    for project in projects:
        usage(project, "vm", WINDOW, "1")
    run = bill(WINDOW, parallel=True).run
    assert run.status == BillingRun.Status.SUCCEEDED and run.charges_created == 3
    assert set(run.chunks.values_list("status", flat=True)) == {"done"}
    assert all(balance(p) == credits_to_micros("9.96") for p in projects)
