"""The database-derived gauges served at each scrape (creditservice/state_metrics.py), for alerting."""

import logging
from datetime import timedelta

import pytest
from django.conf import settings
from django.db import OperationalError
from django.utils import timezone
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from billing.models import BillingRun, OwedCharge, WebhookDelivery, WebhookEndpoint
from creditservice import state_metrics
from payments.models import StripeEvent
from quotas.models import Reservation
from quotas.tests.helpers import reserve
from wallets.models import LedgerCheck

pytestmark = pytest.mark.django_db


def scraped() -> dict[tuple[str, tuple], float]:
    """What a scrape serving StateCollector shows, through the text format, as {(name, labels): value}."""
    registry = CollectorRegistry()
    registry.register(state_metrics.StateCollector())
    text = generate_latest(registry).decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def gauge(values: dict, name: str, **labels: str) -> float | None:
    return values.get((f"creditservice_{name}", tuple(sorted(labels.items()))))


def ledger_check(ok: bool, finished_at) -> LedgerCheck:
    return LedgerCheck.objects.create(source=LedgerCheck.Source.NIGHTLY, started_at=finished_at - timedelta(seconds=5),
                                      finished_at=finished_at, ok=ok, wallets_checked=3, drift_count=0 if ok else 2)


def billing_run(hours_ago: int, status: str) -> BillingRun:
    window_start = (timezone.now() - timedelta(hours=hours_ago + 1)).replace(minute=0, second=0, microsecond=0)
    finished = window_start + timedelta(hours=1, minutes=10)
    return BillingRun.objects.create(window_start=window_start, window_end=window_start + timedelta(hours=1),
                                     status=status, started_at=finished - timedelta(seconds=3), finished_at=finished)


def test_the_collector_is_registered_for_every_scrape():
    assert "creditservice.state_metrics.StateCollector" in settings.METRICS_SCRAPE_COLLECTORS


def test_an_empty_database_shows_nothing_wrong_and_no_ledger_check():
    values = scraped()
    assert gauge(values, "ledger_check_ok") is None  # never ran: absent, which the rules alert on
    assert gauge(values, "billing_last_success_timestamp_seconds") is None
    assert gauge(values, "billing_last_run_failed") == 0 and gauge(values, "billing_runs_failed") == 0
    assert gauge(values, "outbound_webhooks_failing", state="retrying") == 0
    assert gauge(values, "outbound_webhooks_failing", state="gave_up") == 0
    assert gauge(values, "reservations_overdue") == 0 and gauge(values, "stripe_events_failed") == 0


def test_the_latest_ledger_check_decides_ok_and_its_time():
    now = timezone.now()
    ledger_check(ok=True, finished_at=now - timedelta(days=1))
    latest = ledger_check(ok=False, finished_at=now - timedelta(minutes=3))
    values = scraped()
    assert gauge(values, "ledger_check_ok") == 0 and gauge(values, "ledger_check_drifts") == 2
    assert gauge(values, "ledger_check_last_timestamp_seconds") == pytest.approx(latest.finished_at.timestamp())
    ledger_check(ok=True, finished_at=now)
    assert gauge(scraped(), "ledger_check_ok") == 1


def test_billing_shows_the_last_success_and_a_failed_run():
    succeeded = billing_run(3, BillingRun.Status.SUCCEEDED)
    billing_run(4, BillingRun.Status.SUCCEEDED)
    values = scraped()
    assert gauge(values, "billing_last_success_timestamp_seconds") == pytest.approx(succeeded.finished_at.timestamp())
    assert gauge(values, "billing_last_run_failed") == 0

    failed = billing_run(2, BillingRun.Status.FAILED)
    OwedCharge.objects.create(run=succeeded, first_project_id=1, last_project_id=1)
    values = scraped()
    assert gauge(values, "billing_last_run_failed") == 1 and gauge(values, "billing_runs_failed") == 1
    assert gauge(values, "billing_owed_charges") == 1
    assert gauge(values, "billing_last_success_timestamp_seconds") == pytest.approx(succeeded.finished_at.timestamp())

    BillingRun.objects.filter(id=failed.id).update(status=BillingRun.Status.SUCCEEDED)
    values = scraped()
    assert gauge(values, "billing_last_run_failed") == 0 and gauge(values, "billing_runs_failed") == 0


def test_failing_and_given_up_webhook_deliveries_are_counted_apart(project):
    endpoint = WebhookEndpoint.objects.create(url="https://hooks.example.com/in")
    make = lambda status: WebhookDelivery.objects.create(  # noqa: E731
        endpoint=endpoint, event_id="evt_1", event_type="project.grace", payload={}, status=status)
    make(WebhookDelivery.Status.RETRYING)
    make(WebhookDelivery.Status.RETRYING)
    make(WebhookDelivery.Status.FAILED)
    old = make(WebhookDelivery.Status.FAILED)
    WebhookDelivery.objects.filter(id=old.id).update(created_at=timezone.now() - timedelta(days=2))
    make(WebhookDelivery.Status.DELIVERED)
    values = scraped()
    assert gauge(values, "outbound_webhooks_failing", state="retrying") == 2
    assert gauge(values, "outbound_webhooks_failing", state="gave_up") == 1


def test_a_hold_pending_well_past_its_expiry_is_overdue(platform, project):
    for key in ("r1", "r2"):
        assert reserve(platform, key=key).status_code == 201
    assert gauge(scraped(), "reservations_overdue") == 0
    first = Reservation.objects.order_by("id").first()
    Reservation.objects.filter(id=first.id).update(expires_at=timezone.now() - timedelta(minutes=10))
    assert gauge(scraped(), "reservations_overdue") == 1


def test_failed_stripe_events_are_counted(db):
    for index, status in enumerate([StripeEvent.Status.FAILED, StripeEvent.Status.PROCESSED, StripeEvent.Status.FAILED]):
        StripeEvent.objects.create(stripe_event_id=f"evt_{index}", type="charge.refunded", payload={}, status=status)
    assert gauge(scraped(), "stripe_events_failed") == 2


def test_a_failing_query_leaves_out_its_own_gauges_only(monkeypatch, caplog):
    def broken(now):
        raise ValueError("a bug in one area")
        yield  # pragma: no cover

    monkeypatch.setitem(state_metrics.AREAS, "billing", broken)
    with caplog.at_level(logging.ERROR, logger="creditservice.state_metrics"):
        values = scraped()
    assert gauge(values, "billing_last_run_failed") is None
    assert gauge(values, "stripe_events_failed") == 0 and gauge(values, "reservations_overdue") == 0
    assert "reading billing failed" in caplog.text


def test_a_database_that_fails_ends_the_reading_without_breaking_the_scrape(monkeypatch, caplog):
    asked = []

    def down(now):
        asked.append(now)
        raise OperationalError("could not connect to server")
        yield  # pragma: no cover

    for area in state_metrics.AREAS:
        monkeypatch.setitem(state_metrics.AREAS, area, down)
    with caplog.at_level(logging.ERROR, logger="creditservice.state_metrics"):
        assert scraped() == {}
    assert len(asked) == 1  # not once more per area
    assert "the database failed" in caplog.text


def test_the_collector_serves_only_the_gauges_it_declares(project):
    ledger_check(ok=True, finished_at=timezone.now())
    billing_run(1, BillingRun.Status.SUCCEEDED)
    names = {name for name, _ in scraped()}
    assert names == set(state_metrics.GAUGES)
