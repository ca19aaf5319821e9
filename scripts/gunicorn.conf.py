"""gunicorn for `make serve`: sync workers, two per core.

Measured 2026-12-01 (docs/performance.md, "The speed issue"): gthread with keep-alive (2 or 4 threads
a worker) and granian (a Rust HTTP server, WSGI, keep-alive) each served 10-20% more pairs/s over 100
wallets in single runs, but their p99 was 3-7x worse (a thread waiting on the GIL behind another's
request) and the hot wallet slower; sync stays. Two workers a core, not one: since reserve and commit
are one database call each, a worker spends much of a call waiting for the commit to be flushed, and
with one a core the cores idle meanwhile (4 workers on 2 cores: about +27% pairs/s and a lower p99
than 2, in alternating runs).
"""

import multiprocessing
import os
from pathlib import Path

# The workers' metrics: files in one directory, summed by whichever worker serves /metrics
# (creditservice/lib/metrics_exposition.py). Set before the workers import prometheus_client.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR", str(Path(__file__).resolve().parent.parent / "var" / "metrics" / "web"))

bind = f"{os.environ.get('HOST') or '127.0.0.1'}:{os.environ.get('PORT') or '8000'}"
workers = int(os.environ.get("WEB_CONCURRENCY") or 2 * max(1, multiprocessing.cpu_count()))
# GUNICORN_WORKER_CLASS / GUNICORN_THREADS: for measuring the alternatives with make bench.
worker_class = os.environ.get("GUNICORN_WORKER_CLASS") or "sync"
threads = int(os.environ.get("GUNICORN_THREADS") or 1)
keepalive = 5
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"
# A request is killed before the idempotency key it claimed counts as abandoned: a retry that takes the
# key over (after IDEMPOTENCY_LOCK_TIMEOUT_SECONDS, settings.py, same default) must never run beside the
# original. Read from the environment like the rest of this file: the settings are loaded by the workers.
idempotency_lock_seconds = int(os.environ.get("IDEMPOTENCY_LOCK_TIMEOUT_SECONDS") or 60)
timeout = max(1, min(30, idempotency_lock_seconds - 10, idempotency_lock_seconds // 2))


def on_starting(server) -> None:
    # In the master, before any worker forks: the last run's metrics go (their pids are gone), and a
    # configuration mistake (no SECRET_KEY, a bad or unreachable DATABASE_URL) is one line and exit 2,
    # instead of every worker failing to boot.
    from creditservice.lib.metrics_dir import multiprocess_dir_reset
    from creditservice.startup import run_checked

    multiprocess_dir_reset(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    run_checked(lambda: None, database=True)


def child_exit(server, worker) -> None:
    # A worker's counts stay in its files (counters never go down); its live gauges must not.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
