"""What billing reads: usage totals per window over sources, and windows changed since a run."""

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from metering import selectors
from metering.models import CollectionWindow, UsageRecord
from metering.tests.factories import metric_query, resource_type, units, usage_record
from metering.windows import last_closed_window, window_bounds, window_start_of, windows_between
from wallets.tests.factories import ProjectFactory

W = datetime(2026, 11, 22, 1, 0, tzinfo=UTC)
H = timedelta(hours=1)


@pytest.fixture
def beta(db):
    return ProjectFactory(slug="beta")


def test_usage_totals_sum_the_sources_of_a_window(project, beta):
    usage_record(project, "vm", W, W + H, "0.25", source=UsageRecord.Source.PROMETHEUS)
    usage_record(project, "vm", W, W + H, "0.5", source=UsageRecord.Source.PUSH)
    usage_record(beta, "vm", W, W + H, "1")
    usage_record(project, "vm", W + H, W + 2 * H, "7")  # another window
    rows = list(selectors.usage_totals(window_start=W))
    vm = resource_type("vm").id
    assert [(r["project_id"], r["resource_type_id"], r["window_start"], r["window_end"], r["quantity"], r["record_count"])
            for r in rows] == [(project.id, vm, W, W + H, units("0.75"), 2), (beta.id, vm, W, W + H, units("1"), 1)]


def test_usage_totals_changed_since_finds_windows_touched_after_a_run(project, beta):
    old = usage_record(project, "vm", W, W + H, "0.25", source=UsageRecord.Source.PROMETHEUS)
    untouched = usage_record(beta, "vm", W, W + H, "1")
    UsageRecord.objects.filter(id__in=[old.id, untouched.id]).update(updated_at=timezone.now() - timedelta(hours=1))
    run_started = timezone.now() - timedelta(minutes=5)
    usage_record(project, "vm", W, W + H, "0.1", source=UsageRecord.Source.PUSH)  # a late event's record
    rows = list(selectors.usage_totals(changed_since=run_started))
    # The changed window comes with its whole total (both sources), the untouched one not at all.
    assert [(r["project_id"], r["quantity"]) for r in rows] == [(project.id, units("0.35"))]


def test_usage_totals_needs_a_filter(db):
    with pytest.raises(ValueError):
        selectors.usage_totals()


def test_usage_records_for_lists_the_sources_behind_a_total(project):
    usage_record(project, "vm", W, W + H, "0.25", source=UsageRecord.Source.PROMETHEUS)
    usage_record(project, "vm", W, W + H, "0.5", source=UsageRecord.Source.PUSH)
    records = selectors.usage_records_for(project_id=project.id, resource_type_id=resource_type("vm").id, window_start=W)
    assert [r.source for r in records] == ["prometheus", "push"]


def test_collection_is_complete_when_every_enabled_query_collected_the_window(db):
    vm = metric_query("vm", "x")
    storage = metric_query("storage_gib", "y")
    metric_query("gpu", "z", enabled=False)
    CollectionWindow.objects.create(metric_query=vm, window_start=W, window_end=W + H, status="collected")
    CollectionWindow.objects.create(metric_query=storage, window_start=W, window_end=W + H, status="failed")
    assert not selectors.collection_complete(window_start=W)
    assert [g.metric_query for g in selectors.collection_gaps()] == [storage]
    CollectionWindow.objects.filter(metric_query=storage).update(status="collected")
    assert selectors.collection_complete(window_start=W)


def test_windows_are_aligned_to_utc(settings):
    settings.BILLING_WINDOW_MINUTES = 60
    moment = datetime(2026, 11, 22, 3, 59, 59, tzinfo=UTC)
    assert window_bounds(moment) == (datetime(2026, 11, 22, 3, tzinfo=UTC), datetime(2026, 11, 22, 4, tzinfo=UTC))
    assert last_closed_window(moment) == (datetime(2026, 11, 22, 2, tzinfo=UTC), datetime(2026, 11, 22, 3, tzinfo=UTC))
    settings.BILLING_WINDOW_MINUTES = 15
    assert window_start_of(moment) == datetime(2026, 11, 22, 3, 45, tzinfo=UTC)
    assert len(list(windows_between(W, W + H))) == 5
