"""gunicorn for `make serve`: sync workers, which measured best for this CPU-bound API on 2 cores."""

import multiprocessing
import os

bind = f"{os.environ.get('HOST') or '127.0.0.1'}:{os.environ.get('PORT') or '8000'}"
workers = int(os.environ.get("WEB_CONCURRENCY") or max(2, multiprocessing.cpu_count()))
worker_class = "sync"
keepalive = 5
accesslog = os.environ.get("GUNICORN_ACCESS_LOG") or None
errorlog = "-"
timeout = 30


def on_starting(server) -> None:
    # In the master, before any worker forks: a configuration mistake (no SECRET_KEY, a bad or
    # unreachable DATABASE_URL) is one line and exit 2, instead of every worker failing to boot.
    from creditservice.startup import run_checked

    run_checked(lambda: None, database=True)
