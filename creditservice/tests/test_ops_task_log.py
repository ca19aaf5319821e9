"""One log line and one CELERY_TASKS count per task run: succeeded, failed, retried; and a worker
under LOG_FORMAT=json writes its lines, Celery's own included, as JSON."""

import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest

from creditservice.celery import app
from creditservice.lib.metrics import CELERY_TASKS
from creditservice.testing.logs import capture_json_log
from creditservice.testing.metrics import sample_value
from wallets.tasks import purge_idempotency_keys

BASE_DIR = Path(__file__).resolve().parent.parent.parent


@app.task(bind=True, name="tests.ops.retry_once", max_retries=1)
def retry_once(self) -> str:
    if self.request.retries == 0:
        raise self.retry(countdown=0)
    return "second time"


def task_lines(log) -> list[dict]:
    return log.lines("creditservice.task")


@pytest.mark.django_db
def test_a_task_that_succeeds_logs_one_line_and_counts_once():
    name = "wallets.purge_idempotency_keys"
    before = sample_value(CELERY_TASKS, task=name, outcome="succeeded")
    with capture_json_log() as log:
        result = purge_idempotency_keys.apply()
    assert result.successful()
    [line] = task_lines(log)
    assert (line["task"], line["task_id"], line["outcome"], line["level"]) == (name, result.id, "succeeded", "INFO")
    assert isinstance(line["duration_ms"], float)
    assert sample_value(CELERY_TASKS, task=name, outcome="succeeded") == before + 1


@pytest.mark.django_db
def test_a_task_that_raises_is_counted_failed():
    name = "wallets.purge_idempotency_keys"
    before = sample_value(CELERY_TASKS, task=name, outcome="failed")
    with capture_json_log() as log, mock.patch("wallets.idempotency.purge_expired", side_effect=RuntimeError("boom")):
        result = purge_idempotency_keys.apply()
    assert result.failed()
    [line] = task_lines(log)
    assert (line["outcome"], line["level"]) == ("failed", "WARNING")
    assert sample_value(CELERY_TASKS, task=name, outcome="failed") == before + 1


def test_a_retried_task_is_counted_retried_then_succeeded():
    name = "tests.ops.retry_once"
    before = {outcome: sample_value(CELERY_TASKS, task=name, outcome=outcome) for outcome in ("retried", "succeeded")}
    with capture_json_log() as log:
        retry_once.apply()
    assert sorted(line["outcome"] for line in task_lines(log)) == ["retried", "succeeded"]
    assert sample_value(CELERY_TASKS, task=name, outcome="retried") == before["retried"] + 1
    assert sample_value(CELERY_TASKS, task=name, outcome="succeeded") == before["succeeded"] + 1


WORKER_LOGGING = """
import logging
from creditservice.celery import app
app.log.setup(loglevel="INFO")  # what `celery worker` calls
logging.getLogger("celery.worker.consumer").info("celery's own line")
app.tasks  # finalize: registers the tasks
from celery.utils.log import get_task_logger
get_task_logger("tests").warning("a task's line")
"""


@pytest.mark.parametrize("log_format", ["json", "console"])
def test_a_worker_logs_in_the_configured_format(log_format):
    environment = {**os.environ, "LOG_FORMAT": log_format, "CREDITSERVICE_TESTING": "1", "LOG_LEVEL": "INFO"}
    result = subprocess.run([sys.executable, "-c", WORKER_LOGGING], cwd=BASE_DIR, env=environment,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "line" in line]
    assert len(lines) == 2, result.stderr
    if log_format == "json":
        parsed = [json.loads(line) for line in lines]
        assert [(p["logger"], p["message"]) for p in parsed] == [
            ("celery.worker.consumer", "celery's own line"), ("tests", "a task's line")]
    else:
        assert not any(line.startswith("{") for line in lines)
