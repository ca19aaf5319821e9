"""Our tasks reach a real worker through the configured broker (Redis under `make test`)."""

import os
import time
from datetime import timedelta

import pytest
from celery.contrib.testing.worker import start_worker
from django.utils import timezone

from creditservice.celery import app
from wallets.models import IdempotencyRecord
from wallets.tasks import purge_idempotency_keys


@pytest.mark.redis
@pytest.mark.django_db(transaction=True)
def test_a_task_sent_through_redis_is_run_by_a_worker():
    old = timezone.now() - timedelta(days=30)
    IdempotencyRecord.objects.create(scope="api_key:1", key="stale", fingerprint="x", locked_at=old, created_at=old)
    saved = {k: app.conf[k] for k in ("broker_url", "task_always_eager")}
    app.conf.update(broker_url=os.environ["TEST_REDIS_URL"], task_always_eager=False)
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
            purge_idempotency_keys.delay()
            # Wait (bounded) for the worker to have done the task's work.
            for _ in range(200):
                if not IdempotencyRecord.objects.filter(key="stale").exists():
                    break
                time.sleep(0.1)
        assert not IdempotencyRecord.objects.filter(key="stale").exists()
    finally:
        app.conf.update(saved)
