"""PromQL collection: exact quantities from a real Prometheus, and nothing stored when in doubt."""

from datetime import timedelta

import pytest

from metering import collector
from metering.models import CollectionWindow, MetricQuery, UsageRecord
from metering.tests import prometheus as prom
from metering.tests.factories import metric_query, units
from wallets.tests.factories import ProjectFactory


def quantities(code: str, window: int) -> dict[str, int]:
    records = UsageRecord.objects.filter(resource_type__code=code, window_start=prom.window_start(window),
                                         source=UsageRecord.Source.PROMETHEUS)
    return {r.project.slug: r.quantity for r in records.select_related("project")}


def status_of(query: MetricQuery, window: int) -> CollectionWindow:
    return CollectionWindow.objects.get(metric_query=query, window_start=prom.window_start(window))


@pytest.fixture
def projects(db):
    return ProjectFactory(slug="acme"), ProjectFactory(slug="beta")


@pytest.mark.prometheus
def test_a_vm_running_900_seconds_of_a_15_minute_window_is_a_quarter_vm_hour(prometheus, projects):
    query = metric_query("vm", prom.VM_QUERY)
    outcome = collector.collect_window(metric_query=query, window_start=prom.window_start(0))
    assert outcome.collected
    assert quantities("vm", 0) == {"acme": units("0.250000"), "beta": units("0.125000")}
    record = UsageRecord.objects.get(project__slug="acme", resource_type__code="vm", window_start=prom.window_start(0))
    assert record.window_end == prom.window_start(1)
    assert f"metric_query:{query.id}" in record.source_reference
    window = status_of(query, 0)
    assert (window.status, window.attempts, window.records_stored, window.series_refused) == ("collected", 1, 2, 0)


@pytest.mark.prometheus
def test_float_noise_from_the_store_is_quantized_once(prometheus, projects):
    # 1.1 GiB x 900 s comes back as 990.0000000000001 GiB-seconds.
    samples = collector.prometheus_query(collector.render_promql(prom.STORAGE_QUERY, prom.WINDOW), prom.window_start(1))
    assert samples[0].value == "990.0000000000001"
    query = metric_query("storage_gib", prom.STORAGE_QUERY)
    assert collector.collect_window(metric_query=query, window_start=prom.window_start(0)).collected
    assert quantities("storage_gib", 0) == {"acme": units("0.275000")}


@pytest.mark.prometheus
def test_a_counted_resource_is_stored_in_units(prometheus, projects):
    query = metric_query("network_egress_gib", prom.EGRESS_QUERY, result_unit=MetricQuery.ResultUnit.UNITS)
    assert collector.collect_window(metric_query=query, window_start=prom.window_start(1)).collected
    assert quantities("network_egress_gib", 1) == {"acme": units("30.000000")}


@pytest.mark.prometheus
def test_collecting_a_window_twice_stores_it_once(prometheus, projects):
    query = metric_query("vm", prom.VM_QUERY)
    collector.collect_window(metric_query=query, window_start=prom.window_start(0))
    updated = UsageRecord.objects.get(project__slug="acme", window_start=prom.window_start(0)).updated_at
    collector.collect_window(metric_query=query, window_start=prom.window_start(0))
    assert UsageRecord.objects.filter(window_start=prom.window_start(0)).count() == 2
    # An unchanged value does not look like a change to billing.
    assert UsageRecord.objects.get(project__slug="acme", window_start=prom.window_start(0)).updated_at == updated


@pytest.mark.prometheus
def test_an_unknown_project_is_counted_not_stored_and_the_window_is_retried(prometheus, projects):
    query = metric_query("vm", prom.VM_QUERY)
    outcome = collector.collect_window(metric_query=query, window_start=prom.window_start(2))
    assert not outcome.collected
    assert quantities("vm", 2) == {"acme": units("0.250000"), "beta": units("0.000000")}
    window = status_of(query, 2)
    assert window.status == "failed" and window.series_refused == 1
    assert "unknown project 'ghost'" in window.last_error
    # Once the project exists, the retry collects the window.
    ProjectFactory(slug="ghost")
    assert collector.collect_window(metric_query=query, window_start=prom.window_start(2)).collected
    assert quantities("vm", 2)["ghost"] == units("0.250000")
    assert status_of(query, 2).status == "collected" and status_of(query, 2).attempts == 2


@pytest.mark.prometheus
@pytest.mark.parametrize(("promql", "why"), [
    (f"({prom.VM_QUERY}) * 0 / 0", "not a finite number: NaN"),
    (f"({prom.VM_QUERY}) / 0", "not a finite number: +Inf"),
    (f"-1 * ({prom.VM_QUERY})", "negative"),
])
def test_nan_infinite_and_negative_values_are_never_stored(prometheus, projects, promql, why):
    query = metric_query("vm", promql)
    outcome = collector.collect_window(metric_query=query, window_start=prom.window_start(0))
    assert not outcome.collected
    assert outcome.series_refused == 2
    assert not UsageRecord.objects.exists()
    assert why in status_of(query, 0).last_error


@pytest.mark.prometheus
def test_a_query_the_store_refuses_fails_the_window(prometheus, projects):
    query = metric_query("vm", "sum by (project) (increase(vm_running_seconds_total[{window}])")  # unbalanced
    outcome = collector.collect_window(metric_query=query, window_start=prom.window_start(0))
    assert not outcome.collected and not outcome.unavailable
    assert "bad_data" in status_of(query, 0).last_error
    assert not UsageRecord.objects.exists()


@pytest.mark.prometheus
def test_the_periodic_run_back_fills_every_closed_window_and_skips_none(prometheus, projects, settings):
    settings.USAGE_COLLECTION_LOOKBACK_HOURS = 1
    settings.USAGE_COLLECTION_DELAY_SECONDS = 60
    query = metric_query("vm", prom.VM_QUERY)
    ProjectFactory(slug="ghost")
    # w1 was collected before; w0 and w2 are gaps. At BASE+45m+30s w2 is not due yet (the delay);
    # the hour of look-back reaches back into the window before BASE (no data: collected as empty).
    collector.collect_window(metric_query=query, window_start=prom.window_start(1))
    now = prom.window_start(3) + timedelta(seconds=30)
    summary = collector.collect_due_windows(now=now)
    assert [o.window_start for o in summary.outcomes] == [prom.window_start(-1), prom.window_start(0)]
    summary = collector.collect_due_windows(now=now + timedelta(minutes=1))
    assert [o.window_start for o in summary.outcomes] == [prom.window_start(2)]
    assert set(CollectionWindow.objects.values_list("status", flat=True)) == {"collected"}
    assert collector.collect_due_windows(now=now + timedelta(minutes=2)).outcomes == []
    assert quantities("vm", 0)["acme"] == quantities("vm", 1)["acme"] == quantities("vm", 2)["acme"] == units("0.25")


@pytest.mark.prometheus
def test_a_query_whose_unit_does_not_fit_the_type_is_refused(prometheus, projects):
    query = metric_query("vm", prom.VM_QUERY, result_unit=MetricQuery.ResultUnit.UNITS)
    outcome = collector.collect_window(metric_query=query, window_start=prom.window_start(0))
    assert not outcome.collected and "billed in unit-hours" in outcome.error
    assert not UsageRecord.objects.exists()


# --- faults that need no real Prometheus --------------------------------------------------------

def test_a_store_that_is_down_stops_the_run_and_leaves_windows_due(db, settings):
    ProjectFactory(slug="acme")
    settings.PROMETHEUS_URL = f"http://127.0.0.1:{prom.free_port()}"  # nothing listens there
    settings.BILLING_WINDOW_MINUTES = 15
    settings.USAGE_COLLECTION_LOOKBACK_HOURS = 1
    metric_query("vm", prom.VM_QUERY)
    metric_query("storage_gib", prom.STORAGE_QUERY)
    summary = collector.collect_due_windows(now=prom.window_start(4) + timedelta(minutes=5))
    assert len(summary.outcomes) == 1  # stopped at the first refusal instead of timing out on every window
    assert "cannot reach" in summary.stopped_early
    window = CollectionWindow.objects.get()
    assert window.status == "failed" and window.retry_at is None  # an outage is not the window's fault: no back-off
    assert not UsageRecord.objects.exists()


def test_a_slow_store_times_out_and_nothing_is_stored(db, settings, fake_store):
    ProjectFactory(slug="acme")
    settings.PROMETHEUS_TIMEOUT_SECONDS = 1
    answer = {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"project": "acme"}, "value": [0, "900"]}]}}
    fake_store(lambda: (200, prom.json_body(answer)), delay=2.5)
    query = metric_query("vm", prom.VM_QUERY)
    outcome = collector.collect_window(metric_query=query, window_start=prom.window_start(0))
    assert outcome.unavailable and "no answer within 1 s" in outcome.error
    assert not UsageRecord.objects.exists()


@pytest.mark.parametrize(("status", "body", "why"), [
    (200, b"<html>gateway</html>", "not JSON"),
    (200, prom.json_body({"status": "success", "data": {"resultType": "matrix", "result": []}}), "expected a vector"),
    (200, prom.json_body({"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}}]}}),
     "a sample is not"),
    (503, prom.json_body({"status": "error", "errorType": "unavailable", "error": "overloaded"}), "overloaded"),
    (200, prom.json_body(["not", "an", "object"]), "not a JSON object"),
])
def test_a_malformed_answer_fails_the_window_and_stores_nothing(db, fake_store, status, body, why):
    ProjectFactory(slug="acme")
    fake_store(lambda: (status, body))
    query = metric_query("vm", prom.VM_QUERY)
    outcome = collector.collect_window(metric_query=query, window_start=prom.window_start(0))
    assert not outcome.collected and not outcome.unavailable
    assert why in outcome.error
    assert status_of(query, 0).status == "failed"
    assert not UsageRecord.objects.exists()


def test_a_series_without_the_project_label_is_refused(db, fake_store):
    ProjectFactory(slug="acme")
    answer = {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"tenant": "acme"}, "value": [0, "900"]}]}}
    fake_store(lambda: (200, prom.json_body(answer)))
    outcome = collector.collect_window(metric_query=metric_query("vm", prom.VM_QUERY),
                                       window_start=prom.window_start(0))
    assert not outcome.collected and "without the 'project' label" in outcome.error


def test_a_window_that_keeps_failing_is_retried_later_and_later_until_it_is_collected(db, settings, fake_store):
    ProjectFactory(slug="acme")
    settings.USAGE_COLLECTION_LOOKBACK_HOURS = 2
    settings.USAGE_COLLECTION_RETRY_FIRST_MINUTES, settings.USAGE_COLLECTION_RETRY_MAX_MINUTES = 5, 15
    answer = {"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"tenant": "acme"}, "value": [0, "900"]}]}}  # no project label: refused
    fake_store(lambda: (200, prom.json_body(answer)))
    metric_query("vm", prom.VM_QUERY)
    now = prom.window_start(4) + timedelta(minutes=5)

    first = collector.collect_due_windows(now=now)
    starts = [o.window_start for o in first.outcomes]
    assert len(starts) == 8 and first.failed == 8
    # The last hour's windows: still in the (sliding) look-back at the end of the test.
    windows = CollectionWindow.objects.filter(window_start__in=starts[-4:])
    assert set(windows.values_list("retry_at", flat=True)) == {now + timedelta(minutes=5)}

    waiting = collector.collect_due_windows(now=now + timedelta(minutes=4))
    assert waiting.outcomes == [] and waiting.deferred == len(starts)  # not retried, not forgotten
    assert set(windows.values_list("status", flat=True)) == {"failed"}

    second = now + timedelta(minutes=5)
    assert [o.window_start for o in collector.collect_due_windows(now=second).outcomes] == starts
    assert set(windows.values_list("retry_at", flat=True)) == {second + timedelta(minutes=10)}  # doubled
    third = second + timedelta(minutes=10)
    collector.collect_due_windows(now=third)
    assert set(windows.values_list("retry_at", flat=True)) == {third + timedelta(minutes=15)}  # capped

    answer["data"]["result"][0]["metric"] = {"project": "acme"}  # the exporter is fixed
    collector.collect_due_windows(now=third + timedelta(minutes=15))
    assert set(windows.values_list("status", "retry_at")) == {("collected", None)}


def test_without_a_configured_store_the_periodic_run_does_nothing(db, settings):
    settings.PROMETHEUS_URL = ""
    metric_query("vm", prom.VM_QUERY)
    summary = collector.collect_due_windows()
    assert not summary.configured and summary.outcomes == []


def test_placeholders_leave_promql_braces_alone():
    rendered = collector.render_promql('sum by (project) (increase(x{job="vm"}[{window}])) * {window_seconds}',
                                       timedelta(hours=1))
    assert rendered == 'sum by (project) (increase(x{job="vm"}[3600s])) * 3600'


def test_windows_older_than_the_look_back_are_reported_as_gaps(db, settings, fake_store):
    fake_store(lambda: (200, prom.json_body({"status": "success", "data": {"resultType": "vector", "result": []}})))
    settings.USAGE_COLLECTION_LOOKBACK_HOURS = 1
    query = metric_query("vm", prom.VM_QUERY)
    MetricQuery.objects.filter(id=query.id).update(created_at=prom.window_start(0))
    # Three hours after BASE: the first two hours (8 windows) are beyond the look-back and were never collected.
    summary = collector.collect_due_windows(now=prom.window_start(12) + timedelta(minutes=5))
    assert summary.gaps_beyond_lookback == 8
    assert summary.collected == 4  # the look-back itself is walked and collected
    collector.collect_one_window(window_start=prom.window_start(0))
    assert collector.collect_due_windows(now=prom.window_start(12) + timedelta(minutes=5)).gaps_beyond_lookback == 7


@pytest.mark.parametrize(("value", "unit", "expected"), [
    ("900", MetricQuery.ResultUnit.SECONDS, 250_000),
    ("1", MetricQuery.ResultUnit.SECONDS, 278),  # 1/3600 = 0.0002777... units, rounded once to micro-units
    ("2.5000000000000004", MetricQuery.ResultUnit.HOURS, 2_500_000),
    ("30", MetricQuery.ResultUnit.UNITS, 30_000_000),
    ("9.000000000000001e+02", MetricQuery.ResultUnit.SECONDS, 250_000),
])
def test_values_are_converted_to_the_billing_unit_and_rounded_once(value, unit, expected):
    assert collector.to_billing_quantity(value, unit) == expected
