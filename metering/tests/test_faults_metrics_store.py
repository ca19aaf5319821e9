"""The metrics store down, slow or answering garbage: no usage is stored from it, and every window is
collected later, exactly once, when the store answers again.

A fake store on loopback (metering/tests/prometheus.py FakeStore) plays each fault in turn; the
periodic run (collect_due_windows) meets it, then meets a healthy store. The clock is the run's `now`.
"""

from datetime import timedelta

import pytest

from creditservice.testing.invariants import assert_books_balance
from metering import collector
from metering.models import CollectionWindow, UsageRecord
from metering.tests import prometheus as prom
from metering.tests.factories import metric_query, units
from wallets.tests.factories import ProjectFactory

pytestmark = pytest.mark.django_db

NOW = prom.window_start(4) + timedelta(minutes=5)  # windows 0-3 are closed and due
DUE = [prom.window_start(i) for i in range(4)]


def _vector(*samples: tuple[str, str]) -> bytes:
    return prom.json_body({"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"project": slug}, "value": [0, value]} for slug, value in samples]}})


GOOD = _vector(("acme", "900"), ("beta", "450"))  # 0.25 and 0.125 vm-hours

# (what the store does, how the collector must see it: unavailable = the run stops and retries next time)
GARBAGE = {
    "an HTML error page": (502, b"<html><body>Bad gateway</body></html>"),
    "invalid JSON (a cut-off body)": (200, GOOD[: len(GOOD) // 2]),
    "JSON that is not an object": (200, b'"success"'),
    "an error status": (503, prom.json_body({"status": "error", "errorType": "unavailable", "error": "overloaded"})),
    "a matrix instead of a vector": (200, prom.json_body({"status": "success",
                                                          "data": {"resultType": "matrix", "result": []}})),
    "a result that is not a list": (200, prom.json_body({"status": "success",
                                                         "data": {"resultType": "vector", "result": {}}})),
    "a value that is a number, not a string": (200, prom.json_body({"status": "success", "data": {
        "resultType": "vector", "result": [{"metric": {"project": "acme"}, "value": [0, 900]}]}})),
    "one malformed sample among good ones": (200, prom.json_body({"status": "success", "data": {
        "resultType": "vector", "result": [{"metric": {"project": "acme"}, "value": [0, "900"]},
                                           {"metric": {"project": "beta"}}]}})),
}


@pytest.fixture
def projects(db, settings):
    settings.USAGE_COLLECTION_LOOKBACK_HOURS = 1
    # A failed window is retried by the very next run (no back-off), so one test can walk many faults.
    settings.USAGE_COLLECTION_RETRY_FIRST_MINUTES = settings.USAGE_COLLECTION_RETRY_MAX_MINUTES = 0
    return ProjectFactory(slug="acme"), ProjectFactory(slug="beta")


def _collected_once() -> None:
    """Every due window collected, each project's usage stored once with its exact quantity."""
    windows = CollectionWindow.objects.filter(window_start__in=DUE)
    assert sorted(windows.filter(status="collected").values_list("window_start", flat=True)) == DUE
    records = UsageRecord.objects.filter(source=UsageRecord.Source.PROMETHEUS)
    assert records.count() == 2 * len(DUE)
    assert set(records.filter(project__slug="acme").values_list("quantity", flat=True)) == {units("0.25")}
    assert set(records.filter(project__slug="beta").values_list("quantity", flat=True)) == {units("0.125")}


def test_a_store_down_slow_or_answering_garbage_stores_nothing_and_every_window_is_collected_once_later(
        projects, settings, fake_store):
    settings.PROMETHEUS_TIMEOUT_SECONDS = 1
    metric_query("vm", prom.VM_QUERY)
    now = NOW
    faults: list[tuple[str, object]] = [
        ("refused (nothing listens)", None),
        ("hangs up without answering", fake_store(lambda: None)),
        ("answers after the timeout", fake_store(lambda: (200, GOOD), delay=2.5)),
        ("sends its answer a byte at a time, past the timeout", fake_store(lambda: (200, GOOD), trickle=0.05)),
    ] + [(name, fake_store(lambda answer=answer: answer)) for name, answer in GARBAGE.items()]
    for name, store in faults:
        settings.PROMETHEUS_URL = store.url if store else f"http://127.0.0.1:{prom.free_port()}"
        now += timedelta(seconds=1)
        summary = collector.collect_due_windows(now=now)
        assert summary.collected == 0, name
        assert not UsageRecord.objects.exists(), f"{name}: usage was stored"
        assert CollectionWindow.objects.filter(status="collected").count() == 0, name
        if store is None or "answer" in name or "hangs up" in name:
            assert summary.stopped_early, f"{name}: an unavailable store stops the run"

    healthy = fake_store(lambda: (200, GOOD))
    now += timedelta(seconds=1)
    assert collector.collect_due_windows(now=now).collected == len(DUE)
    assert len(healthy.queries) == len(DUE)  # each window asked once
    _collected_once()

    # The next runs ask for none of them again: collected exactly once.
    collector.collect_due_windows(now=now + timedelta(seconds=1))
    assert len(healthy.queries) == len(DUE)
    _collected_once()
    assert_books_balance()


def test_a_store_that_fails_in_the_middle_of_a_run_leaves_no_partial_window(projects, settings, fake_store):
    metric_query("vm", prom.VM_QUERY)
    answers = iter([(200, GOOD), (200, GOOD), None])  # two windows, then the store goes away mid-run
    store = fake_store(lambda: next(answers, None))
    summary = collector.collect_due_windows(now=NOW)
    assert summary.collected == 2 and summary.stopped_early
    assert set(UsageRecord.objects.values_list("window_start", flat=True)) == set(DUE[:2])
    assert set(CollectionWindow.objects.filter(status="collected").values_list("window_start", flat=True)) == set(DUE[:2])

    store.stop()
    healthy = fake_store(lambda: (200, GOOD))
    assert collector.collect_due_windows(now=NOW + timedelta(seconds=1)).collected == 2
    assert len(healthy.queries) == 2  # only the two windows still due were asked for
    _collected_once()
    assert_books_balance()


def test_an_answer_slower_than_the_timeout_in_total_is_not_collected_even_if_every_byte_came_in_time(
        projects, settings, fake_store):
    """requests' timeout bounds each read, not the answer: a store trickling its answer held the
    collector (a worker) as long as it liked, and the answer it finally completed was stored."""
    settings.PROMETHEUS_TIMEOUT_SECONDS = 1
    fake_store(lambda: (200, GOOD), trickle=0.05)  # about 4 s for the whole answer, 0.05 s between bytes
    outcome = collector.collect_window(metric_query=metric_query("vm", prom.VM_QUERY), window_start=DUE[0])
    assert outcome.unavailable and not outcome.collected
    assert "no answer within 1 s" in outcome.error
    assert not UsageRecord.objects.exists()


def test_an_answer_larger_than_the_bound_is_refused_unread(projects, fake_store, monkeypatch):
    monkeypatch.setattr(collector, "MAX_ANSWER_BYTES", 1000)
    fake_store(lambda: (200, _vector(*[("acme", "1")] * 100)))
    outcome = collector.collect_window(metric_query=metric_query("vm", prom.VM_QUERY), window_start=DUE[0])
    assert not outcome.collected and "larger than" in outcome.error
    assert not UsageRecord.objects.exists()
