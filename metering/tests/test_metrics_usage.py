"""Usage collection and pushed events move their Prometheus counters once per window and per event."""

from datetime import timedelta

import pytest

from creditservice.lib import metrics
from creditservice.testing.metrics import sample_value
from metering import collector
from metering.tests import prometheus as prom
from metering.tests.factories import metric_query
from metering.tests.test_api_usage_events import URL, event
from wallets.tests.factories import ProjectFactory

pytestmark = pytest.mark.django_db


def vector(*samples: tuple[str, str]) -> bytes:
    return prom.json_body({"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"project": slug}, "value": [0, value]} for slug, value in samples]}})


def windows(result: str) -> float:
    return sample_value(metrics.USAGE_WINDOWS, result=result)


def test_a_collected_window_and_a_window_with_refused_series_are_counted(fake_store):
    ProjectFactory(slug="acme")
    query = metric_query("vm", prom.VM_QUERY)
    collected, failed, refused = windows("collected"), windows("failed"), sample_value(metrics.USAGE_SAMPLES_REFUSED)

    fake_store(lambda: (200, vector(("acme", "900"))))
    assert collector.collect_window(metric_query=query, window_start=prom.window_start(0)).collected
    assert (windows("collected"), windows("failed")) == (collected + 1, failed)

    fake_store(lambda: (200, vector(("acme", "900"), ("nobody", "10"), ("acme2", "NaN"))))
    assert not collector.collect_window(metric_query=query, window_start=prom.window_start(1)).collected
    assert (windows("collected"), windows("failed")) == (collected + 1, failed + 1)
    assert sample_value(metrics.USAGE_SAMPLES_REFUSED) == refused + 2


def test_an_unreachable_store_counts_the_window_as_failed(fake_store, settings):
    query = metric_query("vm", prom.VM_QUERY)
    settings.BILLING_WINDOW_MINUTES = 15
    settings.PROMETHEUS_URL = f"http://127.0.0.1:{prom.free_port()}"
    failed = windows("failed")
    assert collector.collect_window(metric_query=query, window_start=prom.window_start(0)).unavailable
    assert windows("failed") == failed + 1


def ingested(result: str, reason: str = "") -> float:
    return sample_value(metrics.INGESTED_EVENTS, result=result, reason=reason)


def test_pushed_events_are_counted_by_result_and_rejection_reason(platform, project):
    before = {key: ingested(*key) for key in [("accepted",), ("duplicate",), ("rejected", "unknown_project"),
                                              ("rejected", "timestamp_too_old"), ("rejected", "invalid_event")]}
    old = event(timestamp=(prom.window_start(0) - timedelta(days=30)).isoformat())
    response = platform.post(URL, {"events": [
        event("a"), event("b"), event("a"), event(project="nobody"), old, {"id": "bad"},
    ]}, format="json")
    assert response.status_code == 200, response.json()
    after = {key: ingested(*key) for key in before}
    assert {key: after[key] - before[key] for key in before} == {
        ("accepted",): 2, ("duplicate",): 1, ("rejected", "unknown_project"): 1, ("rejected", "timestamp_too_old"): 1,
        ("rejected", "invalid_event"): 1,
    }
