"""Billing runs and outbound webhook deliveries move their Prometheus counters once per event."""

from datetime import timedelta

import pytest

from billing.models import BillingRun, WebhookDelivery, WebhookEndpoint
from billing.services import charging, runs, webhook_event_emit
from billing.tasks import webhook_deliveries_due
from creditservice.lib import metrics
from creditservice.testing.metrics import sample_value
from wallets.tests.factories import ProjectFactory

from .conftest import WINDOW
from .factories import bill, usage

pytestmark = pytest.mark.django_db


def billing_counts() -> dict[str, float]:
    return {
        "succeeded": sample_value(metrics.BILLING_RUNS, state="succeeded"),
        "partial": sample_value(metrics.BILLING_RUNS, state="partial"),
        "failed": sample_value(metrics.BILLING_RUNS, state="failed"),
        "durations": sample_value(metrics.BILLING_RUN_DURATION, "_count"),
        "projects": sample_value(metrics.BILLING_PROJECTS),
        "charges": sample_value(metrics.BILLING_CHARGES),
        "credits": sample_value(metrics.BILLING_CREDITS_CHARGED),
        "failures": sample_value(metrics.BILLING_FAILURES),
    }


def moved(before: dict[str, float]) -> dict[str, float]:
    after = billing_counts()
    return {name: round(after[name] - before[name], 6) for name in after if after[name] != before[name]}


def test_a_successful_run_counts_its_state_duration_projects_charges_and_credits(clock):
    acme, beta = ProjectFactory(slug="acme", balance="100"), ProjectFactory(slug="beta", balance="100")
    usage(acme, "vm", WINDOW, "3")  # 0.12 credits
    usage(acme, "network_egress_gib", WINDOW, "10")  # 0.1
    usage(beta, "vm", WINDOW, "2")  # 0.08
    before = billing_counts()
    assert bill(WINDOW).run.status == BillingRun.Status.SUCCEEDED
    assert moved(before) == {"succeeded": 1, "durations": 1, "projects": 2, "charges": 3, "credits": 0.3}


def test_a_rerun_that_charges_nothing_counts_a_run_and_no_charges(clock):
    usage(ProjectFactory(slug="acme", balance="100"), "vm", WINDOW, "3")
    bill(WINDOW)
    before = billing_counts()
    bill(WINDOW)
    assert moved(before) == {"succeeded": 1, "durations": 1}


def test_a_project_that_cannot_be_charged_makes_the_run_partial_and_counts_a_failure(clock, monkeypatch):
    good, bad = ProjectFactory(slug="good", balance="100"), ProjectFactory(slug="bad", balance="100")
    usage(good, "vm", WINDOW, "1")
    usage(bad, "vm", WINDOW, "1")
    real = charging.write_charges

    def write_charges(*, planned, **kwargs):
        if any(p.project_id == bad.id for p in planned):
            raise RuntimeError("wallet row is locked by a long transaction")
        return real(planned=planned, **kwargs)

    monkeypatch.setattr(charging, "write_charges", write_charges)
    before = billing_counts()
    assert bill(WINDOW).run.status == BillingRun.Status.PARTIAL
    assert moved(before) == {"partial": 1, "durations": 1, "projects": 1, "charges": 1, "credits": 0.04, "failures": 1}


def test_a_run_that_stops_with_an_error_counts_as_failed(clock, monkeypatch):
    usage(ProjectFactory(slug="acme", balance="100"), "vm", WINDOW, "1")

    def broken_plan(*, run):
        raise RuntimeError("the database refused the plan")

    monkeypatch.setattr(runs, "billing_run_plan", broken_plan)
    before = billing_counts()
    with pytest.raises(RuntimeError):
        bill(WINDOW)
    assert BillingRun.objects.get().status == BillingRun.Status.FAILED
    assert moved(before) == {"failed": 1, "durations": 1}


def deliveries(result: str) -> float:
    return sample_value(metrics.OUTBOUND_WEBHOOK_DELIVERIES, result=result)


def test_outbound_deliveries_count_failed_attempts_then_gave_up_then_delivered(
        clock, receiver, settings, django_capture_on_commit_callbacks):
    settings.OUTBOUND_WEBHOOK_MAX_ATTEMPTS = 2
    receiver.status = 503
    WebhookEndpoint.objects.create(url=receiver.url)
    before = {result: deliveries(result) for result in ("delivered", "failed", "gave_up")}
    with django_capture_on_commit_callbacks(execute=True):
        webhook_event_emit(project=ProjectFactory(slug="acme"), event_type="project.grace", data={})
    assert deliveries("failed") == before["failed"] + 1
    delivery = WebhookDelivery.objects.get()
    clock.move_to(delivery.next_attempt_at + timedelta(seconds=1))
    webhook_deliveries_due()
    assert deliveries("gave_up") == before["gave_up"] + 1

    receiver.status = 200
    with django_capture_on_commit_callbacks(execute=True):
        webhook_event_emit(project=ProjectFactory(slug="beta"), event_type="project.grace", data={})
    assert deliveries("delivered") == before["delivered"] + 1
    assert deliveries("failed") == before["failed"] + 1
