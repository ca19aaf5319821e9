"""Celery tasks of metering: thin, each loads what it needs and calls one service."""

import logging

from celery import shared_task

from . import collector
from .models import CollectionWindow

logger = logging.getLogger(__name__)


@shared_task(name="metering.tasks.collect_usage")
def collect_usage() -> dict:
    """Beat (every 5 minutes): collect every closed window not yet collected, within the look-back."""
    summary = collector.collect_due_windows()
    result = {"collected": summary.collected, "failed": summary.failed, "records_stored": summary.records_stored,
              "series_refused": summary.series_refused, "stopped_early": summary.stopped_early,
              "gaps_beyond_lookback": summary.gaps_beyond_lookback}
    logger.info("usage collection: %s", result)
    return result


@shared_task(name="metering.tasks.collect_window")
def collect_window(collection_window_id: int) -> bool:
    """Collect one recorded window again (the admin's "retry now"); safe to run twice."""
    window = CollectionWindow.objects.select_related("metric_query__resource_type").filter(id=collection_window_id).first()
    if window is None:
        return False
    return collector.collect_window(metric_query=window.metric_query, window_start=window.window_start).collected
