"""GET /readyz: 200 when the database answers, every migration is applied and the broker answers;
503 naming what failed otherwise, within a bounded time, with no secret in the answer."""

import os
import socket
import threading
from unittest import mock

import pytest
from django.db import OperationalError
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.migrations.executor import MigrationExecutor

from creditservice.lib import health

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _migrations_checked_afresh():
    health.forget_migrations_applied()
    yield
    health.forget_migrations_applied()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_ready_with_the_filesystem_broker(client, settings):
    settings.CELERY_BROKER_URL = "filesystem://"
    answer = client.get("/readyz")
    assert answer.status_code == 200
    assert answer.json() == {"status": "ready", "checks": {
        "database": "ok", "migrations": "ok", "broker": "skipped (filesystem broker)"}}


@pytest.mark.redis
def test_ready_with_redis_answering(client, settings):
    settings.CELERY_BROKER_URL = os.environ["TEST_REDIS_URL"]
    answer = client.get("/readyz")
    assert answer.status_code == 200, answer.json()
    assert answer.json()["checks"]["broker"] == "ok"


def test_an_unreachable_broker_is_503_without_its_password(client, settings):
    settings.CELERY_BROKER_URL = f"redis://:hunter2-secret@127.0.0.1:{closed_port()}/0"
    answer = client.get("/readyz")
    assert answer.status_code == 503
    body = answer.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == "ok" and body["checks"]["migrations"] == "ok"
    assert body["checks"]["broker"].startswith("unreachable: ")
    assert "hunter2" not in answer.content.decode()


def test_a_broker_that_accepts_and_never_answers_is_unreachable(client, settings):
    # A listening socket nobody reads: the connection opens, PING gets no reply; the broker's socket
    # timeout (BROKER_TIMEOUT_SECONDS) ends the check.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
        answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["checks"]["broker"].startswith("unreachable: TimeoutError")


def test_unapplied_migrations_are_named(client, settings):
    settings.CELERY_BROKER_URL = "filesystem://"
    with mock.patch.object(MigrationExecutor, "migration_plan", return_value=[("m1", False), ("m2", False)]):
        answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["checks"] == {"database": "ok", "migrations": "2 unapplied", "broker": "skipped (filesystem broker)"}


def test_all_migrations_applied_is_remembered(client, settings):
    settings.CELERY_BROKER_URL = "filesystem://"
    assert client.get("/readyz").status_code == 200
    with mock.patch.object(MigrationExecutor, "migration_plan", side_effect=AssertionError("planned again")):
        assert client.get("/readyz").status_code == 200


def test_a_database_that_cannot_be_reached_is_503(client, settings):
    settings.CELERY_BROKER_URL = "filesystem://"
    refused = OperationalError("connection to server failed: Connection refused")
    with mock.patch.object(BaseDatabaseWrapper, "ensure_connection", side_effect=refused):
        answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json()["checks"] == {
        "database": "unavailable: OperationalError: connection to server failed: Connection refused",
        "migrations": "not checked", "broker": "skipped (filesystem broker)"}


def test_a_hung_check_times_out_and_is_not_started_again_while_it_hangs(client, settings, monkeypatch):
    settings.CELERY_BROKER_URL = "redis://127.0.0.1:6399/0"
    monkeypatch.setattr(health, "CHECK_DEADLINE_SECONDS", 0.2)
    entered, release = threading.Event(), threading.Event()
    calls = []

    def hang(self):
        calls.append(1)
        entered.set()
        release.wait(30)

    broker = next(check for check in health.CHECKS if check.names == ("broker",))
    with mock.patch("redis.Redis.ping", hang):
        first = client.get("/readyz")
        assert entered.wait(30)
        second = client.get("/readyz")
        release.set()
        assert broker.running.acquire(timeout=30)  # the hung check ends once its call returns
        broker.running.release()
    assert first.status_code == second.status_code == 503
    assert first.json()["checks"]["broker"] == "timed out"
    assert second.json()["checks"]["broker"] == "timed out (an earlier check has not finished)"
    assert len(calls) == 1


def test_readyz_needs_no_key_and_is_not_in_the_schema(client, settings):
    settings.CELERY_BROKER_URL = "filesystem://"
    assert client.get("/readyz").status_code == 200
    assert b"readyz" not in client.get("/api/schema/").content
