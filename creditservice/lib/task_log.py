"""One log line and one count per Celery task run (creditservice.celery imports this module).

The line (logger creditservice.task) names the task, its id, the outcome and the duration; the
count is CELERY_TASKS{task, outcome} with outcome succeeded, failed or retried. Arguments are
not logged: they are ids, but a task is free to take something that is not.

With LOG_FORMAT=json a worker logs through Django's LOGGING (the JSON formatter) instead of
Celery's own handlers, so its lines, Celery's included, are one JSON object each like the web's.
"""

import logging
import logging.config
import threading
import time
from typing import Any

from celery import signals

from .metrics import CELERY_TASKS

log = logging.getLogger("creditservice.task")

# Celery's states at task_postrun, as the outcome label (a closed set). IGNORED and REJECTED, which a
# task chooses itself, and anything unexpected count as failed: the task did not do its work.
OUTCOMES = {"SUCCESS": "succeeded", "RETRY": "retried"}
# Start times of the tasks running in this process, by task id. A worker runs a handful at once; the
# bound only matters if postrun were never sent (a process killed mid-task never returns here).
MAX_RUNNING = 10_000

_started: dict[str, float] = {}
_started_lock = threading.Lock()


@signals.task_prerun.connect
def note_task_start(task_id: str | None = None, **kwargs: Any) -> None:
    with _started_lock:
        if len(_started) >= MAX_RUNNING:
            _started.clear()
        _started[str(task_id)] = time.perf_counter()


@signals.task_postrun.connect
def log_task_run(task_id: str | None = None, task: Any = None, state: str | None = None, **kwargs: Any) -> None:
    with _started_lock:
        started = _started.pop(str(task_id), None)
    duration_ms = round((time.perf_counter() - started) * 1000, 3) if started is not None else None
    name = getattr(task, "name", None) or "unknown"
    outcome = OUTCOMES.get(state or "", "failed")
    CELERY_TASKS.labels(name, outcome).inc()
    level = logging.INFO if outcome == "succeeded" else logging.WARNING
    log.log(level, "task %s %s %s in %s ms", name, task_id, outcome, duration_ms,
            extra={"task": name, "task_id": str(task_id), "outcome": outcome, "duration_ms": duration_ms})


def use_django_logging_when_json(settings: Any) -> None:
    """Under LOG_FORMAT=json, have Celery leave logging to Django's LOGGING (called once settings load).

    A setup_logging receiver tells Celery not to install its handlers; it then also leaves the level
    to LOG_LEVEL (a worker's -l is not used).
    """
    if settings.LOG_FORMAT == "json":
        signals.setup_logging.connect(configure_from_django_settings, weak=False)


def configure_from_django_settings(**kwargs: Any) -> None:
    from django.conf import settings

    logging.config.dictConfig(settings.LOGGING)
