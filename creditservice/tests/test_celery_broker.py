"""Tasks reach a real worker through the configured broker (Redis under `make test`)."""

import os

import pytest
from celery.contrib.testing.worker import start_worker

from creditservice.celery import app
from wallets.tasks import ping


@pytest.mark.redis
def test_a_task_goes_through_redis_to_a_worker_and_back():
    url = os.environ["TEST_REDIS_URL"]
    saved = {k: app.conf[k] for k in ("broker_url", "result_backend", "task_always_eager", "task_ignore_result")}
    app.conf.update(broker_url=url, result_backend=url, task_always_eager=False, task_ignore_result=False)
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
            assert ping.delay("pong-42").get(timeout=20) == "pong-42"
    finally:
        app.conf.update(saved)
