"""The Celery app: tasks live in each app's tasks.py; schedules live in django-celery-beat's tables."""

import os
from pathlib import Path
from typing import Any

from celery import Celery, signals

# First: a worker's metrics storage is chosen when prometheus_client is first imported.
from creditservice import celery_metrics

celery_metrics.use_multiprocess_dir()

from creditservice.startup import check_database, exit_on_config_error  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "creditservice.settings")

app = Celery("creditservice")


@app.on_configure.connect
def load_settings_or_exit(**kwargs: Any) -> None:
    # Celery reads Django's settings lazily, in the middle of parsing its command line: without this a
    # missing SECRET_KEY or a bad DATABASE_URL is a 60-line click traceback instead of one line.
    with exit_on_config_error():
        from django.conf import settings

        settings.INSTALLED_APPS  # noqa: B018  (loads the settings)
        # One log line and count per task run: task_log's signal receivers, connected by the import.
        # Imported once the settings are loaded, as the metrics must be (PROMETHEUS_MULTIPROC_DIR).
        from creditservice.lib import task_log

        task_log.use_django_logging_when_json(settings)


@signals.import_modules.connect(sender=app)
def check_database_or_exit(**kwargs: Any) -> None:
    # Sent once when a worker or beat starts: beat's scheduler reads its tables at once, and a worker
    # that cannot reach the database would fail every task. Either way: say so and stop.
    with exit_on_config_error():
        check_database()


@signals.worker_ready.connect
def mark_worker_ready(**kwargs: Any) -> None:
    mark_ready("worker")


@signals.beat_init.connect
def mark_beat_ready(**kwargs: Any) -> None:
    mark_ready("beat")


def mark_ready(name: str) -> None:
    # `make run` prints its access box once the web server, the worker and beat are up, so that the
    # box comes after their start-up banners (scripts/run_all.sh sets the directory).
    ready_dir = os.environ.get("CREDITSERVICE_READY_DIR")
    if ready_dir:
        Path(ready_dir, name).touch()


app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
