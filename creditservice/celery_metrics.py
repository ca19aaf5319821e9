"""A Celery worker's metrics: where its processes write them, and its own endpoint (METRICS_PORT).

A worker runs tasks in pool processes, so its counters are in multiprocess mode like gunicorn's
(creditservice/lib/metrics_exposition.py). prometheus_client picks the mode when it is first
imported, which is why creditservice/celery.py calls use_multiprocess_dir() before anything else.
"""

import os
import sys
from pathlib import Path
from typing import Any

from celery import signals

BASE_DIR = Path(__file__).resolve().parent.parent


def is_celery_worker(argv: list[str]) -> bool:
    """`celery … worker` or `python -m celery … worker`, not the tests, beat or manage.py."""
    program = Path(argv[0]) if argv else Path()
    return "worker" in argv[1:] and "celery" in (program.name, program.parent.name)


def use_multiprocess_dir() -> None:
    """In a Celery worker without PROMETHEUS_MULTIPROC_DIR: var/metrics/worker, emptied now, before its
    processes write there. A directory given in the environment is emptied by whoever gave it
    (scripts/run_all.sh shares one with the web server and beat, which must not be emptied under them)."""
    if not is_celery_worker(sys.argv) or os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    directory = BASE_DIR / "var" / "metrics" / "worker"
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)
    from creditservice.lib.metrics_dir import multiprocess_dir_reset

    multiprocess_dir_reset(directory)


@signals.worker_ready.connect
def serve_metrics_when_asked(**kwargs: Any) -> None:
    # In the worker's main process, once the pool is up: a worker on a host of its own serves the
    # sum of its processes' counters (the web's /metrics cannot read its directory).
    from django.conf import settings

    if settings.METRICS_PORT:
        from creditservice.lib.metrics_exposition import serve_worker_metrics

        serve_worker_metrics(addr=settings.METRICS_ADDR, port=settings.METRICS_PORT)


@signals.worker_process_shutdown.connect
def mark_pool_process_dead(pid: int | None = None, **kwargs: Any) -> None:
    # A pool process that ends (max-tasks-per-child, a crash the pool noticed) leaves its files, which
    # keep its counts; only its live gauges must go.
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid or os.getpid())
