"""collect_usage from the shell and the beat schedule."""

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django_celery_beat.models import PeriodicTask

from metering import tasks
from metering.models import UsageRecord
from metering.tests import prometheus as prom
from metering.tests.factories import metric_query
from wallets.tests.factories import ProjectFactory


def test_collection_is_scheduled_with_celery_beat(db):
    task = PeriodicTask.objects.get(task="metering.tasks.collect_usage")
    assert task.enabled and task.interval.every == 5 and task.interval.period == "minutes"


@pytest.mark.prometheus
def test_collect_usage_for_one_window_prints_progress_and_a_summary(prometheus, db):
    ProjectFactory(slug="acme")
    ProjectFactory(slug="beta")
    metric_query("vm", prom.VM_QUERY)
    out = StringIO()
    call_command("collect_usage", "--window-start", prom.window_start(0).isoformat(), stdout=out)
    text = out.getvalue()
    assert "vm: collected, 2 records, 0 series refused" in text
    assert "Summary: 1 windows tried, 1 collected, 0 failed, 2 records stored" in text
    assert UsageRecord.objects.count() == 2


@pytest.mark.prometheus
def test_collect_usage_fails_loudly_when_a_window_fails(prometheus, db):
    ProjectFactory(slug="acme")
    metric_query("vm", prom.VM_QUERY)  # beta and ghost are unknown here
    out = StringIO()
    with pytest.raises(CommandError, match="1 windows failed"):
        call_command("collect_usage", "--window-start", prom.window_start(2).isoformat(), stdout=out)
    assert "FAILED" in out.getvalue()


def test_collect_usage_refuses_a_time_that_is_not_a_window_start(db, settings):
    settings.PROMETHEUS_URL = "http://127.0.0.1:9"
    with pytest.raises(CommandError, match="not the start of a window"):
        call_command("collect_usage", "--window-start", "2026-11-22T03:10:00Z", stdout=StringIO())
    with pytest.raises(CommandError, match="time zone"):
        call_command("collect_usage", "--window-start", "2026-11-22T03:00:00", stdout=StringIO())


def test_collect_usage_without_a_store_says_so(db, settings):
    settings.PROMETHEUS_URL = ""
    with pytest.raises(CommandError, match="PROMETHEUS_URL is not set"):
        call_command("collect_usage", stdout=StringIO())


def test_the_periodic_task_reports_a_summary(db, settings):
    settings.PROMETHEUS_URL = ""
    assert tasks.collect_usage.delay().get()["collected"] == 0
