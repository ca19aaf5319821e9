"""Nudge the broker, never fail the caller.

Every task we send is for work the database already holds (an outbox row): a webhook delivery, a
billing run's chunks, a collection window, a window due for billing. The row is the source of truth
and a beat sweep finds it anyway; the task only makes it happen sooner. So a publish that fails (the
broker stopped, unreachable or hung) is logged and counted here and the caller goes on: never a 500,
never a rolled-back write. How long one attempt may take is bounded by the broker settings
(creditservice/settings.py, "Celery": one attempt, short connect and socket timeouts).
"""

import logging
import threading
from datetime import datetime
from typing import Any

from celery import Task
from django.db import transaction

from .metrics import BROKER_ERRORS

log = logging.getLogger(__name__)

_failures_lock = threading.Lock()
_failures = 0


def enqueue(task: Task, *args: Any, eta: datetime | None = None, **kwargs: Any) -> bool:
    """Send task(*args, **kwargs) once; False (logged, counted) if the broker did not take it.

    retry=False: the broker settings already bound one attempt; retrying here would only multiply
    the wait while the work waits safely in the database.
    """
    try:
        task.apply_async(args, kwargs or None, eta=eta, retry=False)
    except Exception as exc:  # any transport's error: kombu's OperationalError, redis-py's, OSError
        _count_failure()
        log.warning("could not enqueue %s%r: %s: %s; the database keeps the work for its sweep",
                    task.name, args, type(exc).__name__, exc)
        return False
    return True


def enqueue_on_commit(task: Task, *args: Any, **kwargs: Any) -> None:
    """enqueue() once the caller's transaction commits (at once outside one): the worker must find the
    row, and no network call happens while the transaction holds its locks."""
    transaction.on_commit(lambda: enqueue(task, *args, **kwargs))


def _count_failure() -> None:
    global _failures
    with _failures_lock:
        _failures += 1
    BROKER_ERRORS.inc()


def enqueue_failures() -> int:
    """Publishes this process could not make since it started (the broker was down)."""
    return _failures
