"""One bad sample, label or window never stops the collection of the others."""

from datetime import timedelta

import pytest

from metering import collector
from metering.models import CollectionWindow, MetricQuery, UsageRecord
from metering.tests import prometheus as prom
from metering.tests.factories import metric_query, units
from wallets.tests.factories import ProjectFactory

pytestmark = pytest.mark.django_db

# Four 15-minute windows (0..3) are due at this time with a one-hour look-back.
NOW = prom.window_start(4) + timedelta(minutes=5)


def answer(*series: tuple[dict, str]) -> bytes:
    return prom.json_body({"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": labels, "value": [0, value]} for labels, value in series]}})


def stored(code: str) -> dict[tuple[str, int], int]:
    """(project slug, window index) → quantity of the collected records of a type."""
    records = UsageRecord.objects.filter(resource_type__code=code, source=UsageRecord.Source.PROMETHEUS)
    return {(r.project.slug, int((r.window_start - prom.BASE) / prom.WINDOW)): r.quantity
            for r in records.select_related("project")}


@pytest.fixture
def projects(db):
    return ProjectFactory(slug="acme"), ProjectFactory(slug="beta")


@pytest.mark.parametrize("huge", ["1e20", "1" * 60, "9" * 60 + ".5", "1e2000000"])
@pytest.mark.parametrize("unit", [MetricQuery.ResultUnit.SECONDS, MetricQuery.ResultUnit.HOURS])
def test_an_oversized_sample_is_refused_and_the_other_series_are_stored(projects, fake_store, huge, unit):
    fake_store(lambda: (200, answer(({"project": "acme"}, "900"), ({"project": "beta"}, huge))))
    query = metric_query("vm", prom.VM_QUERY, result_unit=unit)

    outcome = collector.collect_window(metric_query=query, window_start=prom.window_start(0))

    assert (outcome.collected, outcome.records_stored, outcome.series_refused) == (False, 1, 1)
    window = CollectionWindow.objects.get(metric_query=query)
    assert (window.status, window.series_refused) == ("failed", 1)
    assert "project 'beta': above the bound" in window.last_error and window.retry_at is not None
    assert set(stored("vm")) == {("acme", 0)}


def test_an_oversized_sample_never_stops_later_windows_or_other_queries(projects, settings, fake_store):
    settings.USAGE_COLLECTION_LOOKBACK_HOURS = 1
    fake_store(lambda: (200, answer(({"project": "beta"}, "1e20"), ({"project": "acme"}, "900"))))
    metric_query("vm", prom.VM_QUERY)
    metric_query("network_egress_gib", prom.EGRESS_QUERY, result_unit=MetricQuery.ResultUnit.UNITS)

    summary = collector.collect_due_windows(now=NOW)

    assert len(summary.outcomes) == 8 and summary.series_refused == 8  # 4 windows x 2 queries, beta each time
    assert stored("vm") == {("acme", w): units("0.25") for w in range(4)}
    assert stored("network_egress_gib") == {("acme", w): units("900") for w in range(4)}
    assert set(CollectionWindow.objects.values_list("status", flat=True)) == {"failed"}


def test_series_that_add_up_beyond_the_bound_are_refused_not_overflowed(projects, fake_store):
    # Each series is within the bound (9 x 10^11 GiB); eleven of them add up past a 64-bit column.
    series = [({"project": "acme", "instance": str(i)}, "900000000000") for i in range(11)]
    fake_store(lambda: (200, answer(*series, ({"project": "beta"}, "30"))))
    query = metric_query("network_egress_gib", prom.EGRESS_QUERY, result_unit=MetricQuery.ResultUnit.UNITS)

    outcome = collector.collect_window(metric_query=query, window_start=prom.window_start(0))

    assert not outcome.collected and outcome.records_stored == 1
    assert "project 'acme': its series add up to more than 1000000000000" in outcome.error
    assert stored("network_egress_gib") == {("beta", 0): units("30")}


@pytest.mark.parametrize("label", ["ac\x00me", "x" * 10_000, "bad\nline"])
def test_a_project_label_no_project_can_have_is_refused(projects, fake_store, label):
    fake_store(lambda: (200, answer(({"project": label}, "900"), ({"project": "beta"}, "450"))))
    query = metric_query("vm", prom.VM_QUERY)

    outcome = collector.collect_window(metric_query=query, window_start=prom.window_start(0))

    assert not outcome.collected and outcome.series_refused == 1
    assert "project label" in outcome.error
    assert stored("vm") == {("beta", 0): units("0.125")}
    assert "\x00" not in CollectionWindow.objects.get().last_error


def test_an_unexpected_error_storing_one_window_is_recorded_on_it_and_the_run_goes_on(
        projects, settings, fake_store, monkeypatch):
    settings.USAGE_COLLECTION_LOOKBACK_HOURS = 1
    fake_store(lambda: (200, answer(({"project": "acme"}, "900"))))
    vm = metric_query("vm", prom.VM_QUERY)
    metric_query("network_egress_gib", prom.EGRESS_QUERY, result_unit=MetricQuery.ResultUnit.UNITS)
    real = collector.services.usage_records_store

    def store(**kwargs):
        if kwargs["resource_type_id"] == vm.resource_type_id and kwargs["window_start"] == prom.window_start(1):
            raise RuntimeError("numeric field overflow")
        return real(**kwargs)

    monkeypatch.setattr(collector.services, "usage_records_store", store)
    summary = collector.collect_due_windows(now=NOW)

    assert (len(summary.outcomes), summary.collected) == (8, 7)
    broken = CollectionWindow.objects.get(metric_query=vm, window_start=prom.window_start(1))
    assert broken.status == "failed" and broken.attempts == 1 and broken.retry_at is not None
    assert "unexpected error: RuntimeError: numeric field overflow" in broken.last_error
    assert set(stored("vm")) == {("acme", 0), ("acme", 2), ("acme", 3)}
    assert len(stored("network_egress_gib")) == 4

    monkeypatch.undo()  # fixed: the window is collected when its retry comes
    collector.collect_due_windows(now=broken.retry_at)
    broken.refresh_from_db()
    assert broken.status == "collected"
