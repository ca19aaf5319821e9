"""Redis (the broker) stopped or hung: the API keeps answering, webhooks wait in their delivery rows (the
outbox) and are sent once the broker is back, each exactly once; work that only a worker would have sped
up is done without it.

The main test starts its own redis-server on a free loopback port (the machine's Redis is shared) and
points Celery at it, publishing for real (the suite runs tasks eagerly). It stops that server, or
freezes it with SIGSTOP (it accepts connections and never answers), drives the API, starts it again and
lets a real worker and the minute sweep race to send what is owed. The others point Celery at a port
where nothing listens: a stopped broker, no server needed.
"""

import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import redis
from celery.contrib.testing.worker import start_worker
from django.conf import settings as django_settings
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from kombu import pools as kombu_pools

from billing.models import BillingRun, Charge, WebhookDelivery, WebhookEndpoint
from billing.tasks import webhook_deliveries_due
from creditservice.celery import app
from creditservice.lib.enqueue import enqueue, enqueue_failures
from quotas.tests.helpers import CHECK, RESERVE, ledger_is_consistent
from wallets.models import Project
from wallets.tests.factories import ProjectFactory

from .conftest import WINDOW
from .factories import bill, usage

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# Under CI a missing redis-server fails the test (Popen raises) instead of skipping it.
needs_redis_server = pytest.mark.skipif(shutil.which("redis-server") is None and not CI,
                                        reason="needs the redis-server program")
# Rounds of five calls (check, reserve, commit or release, credit, debit): 40 rounds are 200 calls.
ROUNDS = int(os.environ.get("BROKER_DOWN_ROUNDS", "40"))
_keys = itertools.count()


class RedisServer:
    """A private redis-server on a free loopback port; stop() and start() keep the port."""

    def __init__(self, directory):
        self.directory = directory
        self.port = closed_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.directory)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)
        for _ in range(200):  # bounded: about 10 s
            try:
                if client.ping():
                    return
            except redis.ConnectionError:
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGCONT)  # a frozen server cannot act on SIGTERM
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def freeze(self) -> None:
        """Hung, not gone: the kernel still accepts connections, nothing answers them."""
        self.process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.process.send_signal(signal.SIGCONT)

    def idle(self) -> bool:
        """No task waiting in the queue and none taken but not acknowledged (kombu's unacked hash)."""
        client = redis.Redis(port=self.port, socket_timeout=0.5)
        return client.llen("celery") == 0 and client.hlen("unacked") == 0


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # free once the probe closes: a connection there is refused


def _reset_publisher_pools() -> None:
    # Celery caches its connection and producer pools for the broker URL it first saw; drop them so the
    # next publish opens a connection to the broker this test set (and the next test to its own).
    # kombu also keeps them in its process-wide registries (kombu.pools): reset those too, or a later
    # publish in this process draws from a pool closed here ("Acquire on closed pool").
    if app._pool is not None:
        app._pool.force_close_all()
    app._pool = None
    app.amqp._producer_pool = None
    kombu_pools.reset()


@contextmanager
def broker_at(url: str, settings, monkeypatch) -> Iterator[None]:
    """Publish for real through url, as production does, for the length of the block."""
    for name in ("CELERY_BROKER_URL", "CELERY_BROKER_READ_URL", "CELERY_BROKER_WRITE_URL"):
        monkeypatch.delenv(name, raising=False)  # Celery reads these before its own configuration
    saved = {name: app.conf[name] for name in ("broker_url", "task_always_eager")}
    settings.CELERY_TASK_ALWAYS_EAGER = False  # the webhook retry path reads Django's setting
    app.conf.update(broker_url=url, task_always_eager=False)
    _reset_publisher_pools()
    try:
        yield
    finally:
        app.conf.update(saved)
        _reset_publisher_pools()


@pytest.fixture
def broker_stopped(settings, monkeypatch) -> Iterator[None]:
    with broker_at(f"redis://127.0.0.1:{closed_port()}/0", settings, monkeypatch):
        yield


@pytest.fixture
def broker(tmp_path, settings, monkeypatch) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        with broker_at(server.url, settings, monkeypatch):
            yield server
    finally:
        server.stop()


def post(client, path: str, body: dict):
    return client.post(path, body, format="json", HTTP_IDEMPOTENCY_KEY=f"broker-down-{next(_keys)}")


def drive_the_api(client, rounds: int) -> list[tuple[str, int]]:
    """Check, reserve, commit or release, credit, debit on acme: (call, status) for each call."""
    answers = []
    vm = {"project": "acme", "resource_type": "vm", "quantity": "1", "amount": "0.5"}
    for i in range(rounds):
        answers.append(("check", post(client, CHECK, vm).status_code))
        reserved = post(client, RESERVE, vm)
        answers.append(("reserve", reserved.status_code))
        action = "commit" if i % 2 else "release"
        settled = client.post(f"{RESERVE}/{reserved.json().get('id', 0)}/{action}", {}, format="json")
        answers.append((action, settled.status_code))
        answers.append(("credit", post(client, "/api/v1/projects/acme/wallet/credit",
                                       {"amount": "1.000001", "reason": "broker down"}).status_code))
        answers.append(("debit", post(client, "/api/v1/projects/acme/wallet/debit",
                                      {"amount": "0.000001", "reason": "broker down"}).status_code))
    return answers


def lifecycle_round_trip(client) -> None:
    """A debit that empties lean (→ grace, one webhook), then a credit that funds it (→ active, another)."""
    assert post(client, "/api/v1/projects/lean/wallet/debit", {"amount": "1", "reason": "empty it"}).status_code == 201
    assert Project.objects.get(slug="lean").status == Project.Status.GRACE
    assert post(client, "/api/v1/projects/lean/wallet/credit", {"amount": "1", "reason": "fund it"}).status_code == 201
    assert Project.objects.get(slug="lean").status == Project.Status.ACTIVE


def test_a_publish_gives_up_at_once_instead_of_retrying_or_waiting():
    """What bounds a request's wait on the broker: one attempt, no retry, connect and read timeouts."""
    options = app.conf.broker_transport_options
    assert app.conf.task_publish_retry is False
    assert options["max_retries"] == 0
    assert 0 < options["socket_connect_timeout"] <= 1 and 0 < options["socket_timeout"] <= 1
    assert 0 < app.conf.broker_connection_timeout <= 1
    assert options["socket_timeout"] == django_settings.BROKER_TIMEOUT_SECONDS


@needs_redis_server
@pytest.mark.django_db(transaction=True)
def test_with_the_broker_stopped_or_hung_the_api_answers_and_webhooks_are_sent_once_it_is_back(
        broker, platform, receiver):
    ProjectFactory(slug="acme", balance="100")
    lean = ProjectFactory(slug="lean", balance="1")
    # Two endpoints: each event is two deliveries, and once one publish fails the other is not tried.
    WebhookEndpoint.objects.create(url=receiver.url)
    WebhookEndpoint.objects.create(url=receiver.url, project=lean)

    # Broker up: a transition's delivery is published for real (no worker runs yet, so it waits in Redis).
    assert app.connection_for_write().port == broker.port
    failures = enqueue_failures()
    lifecycle_round_trip(platform)
    assert enqueue_failures() == failures and WebhookDelivery.objects.count() == 4
    assert redis.Redis(port=broker.port).llen("celery") == 4

    # Broker stopped: every call answers as it would with the broker up.
    broker.stop()
    answers = drive_the_api(platform, ROUNDS)
    for _ in range(3):
        lifecycle_round_trip(platform)
    expected = {"check": {200}, "reserve": {201}, "commit": {200}, "release": {200}, "credit": {201}, "debit": {201}}
    wrong = [(call, code) for call, code in answers if code not in expected[call]]
    assert len(answers) == 5 * ROUNDS and not wrong, wrong[:10]
    # Each of the six events tried one publish, which failed, was caught and counted; its rows wait.
    assert enqueue_failures() == failures + 6
    waiting = WebhookDelivery.objects.filter(status=WebhookDelivery.Status.PENDING, attempts=0)
    assert waiting.count() == WebhookDelivery.objects.count() == 16 and receiver.requests == []

    # Broker hung (accepts connections, never answers): the read timeout ends each publish.
    broker.start()
    broker.freeze()
    lifecycle_round_trip(platform)
    assert enqueue_failures() == failures + 8
    assert waiting.count() == 20 and receiver.requests == []
    # Thawed, Redis may still run the publishes it had buffered: duplicates of what the sweep sends.
    broker.thaw()

    # Back: what beat does every minute, a real worker, and the sweep at once in this thread.
    with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
        assert enqueue(webhook_deliveries_due)
        webhook_deliveries_due()
        for _ in range(300):  # bounded: about 30 s
            if broker.idle() and not waiting.exists():
                break
            time.sleep(0.1)
    deliveries = WebhookDelivery.objects.all()
    assert {d.status for d in deliveries} == {WebhookDelivery.Status.DELIVERED}
    assert {d.attempts for d in deliveries} == {1}
    sent = Counter(headers["Creditservice-Delivery"] for headers, _ in receiver.requests)
    assert sent == Counter({str(d.id): 1 for d in deliveries}), "each delivery exactly once"
    assert Counter(json.loads(body)["id"] for _, body in receiver.requests) == Counter(
        {d.event_id: 2 for d in deliveries}), "each event once to each endpoint"
    assert receiver.events().count("project.grace") == receiver.events().count("project.reactivated") == 10
    assert ledger_is_consistent()


@pytest.mark.django_db
def test_a_billing_run_with_the_broker_down_takes_every_chunk_itself(clock, settings, broker_stopped):
    """Its parallel helpers are only a speed-up: one failed publish, no further tries, the run succeeds."""
    settings.BILLING_CHUNK_SIZE = 1
    settings.BILLING_PARALLEL_WORKERS = 2
    for slug in ("p1", "p2", "p3"):
        usage(ProjectFactory(slug=slug, balance="10"), "vm", WINDOW, "1")
    failures = enqueue_failures()
    outcome = bill(WINDOW, parallel=True)
    assert outcome.run.status == BillingRun.Status.SUCCEEDED and Charge.objects.count() == 3
    assert enqueue_failures() == failures + 1
    assert ledger_is_consistent()


@pytest.mark.django_db
def test_staff_are_told_when_the_broker_does_not_take_a_background_billing_run(clock, client, broker_stopped):
    client.force_login(get_user_model().objects.create_superuser("staff", "staff@example.com", "pw-for-tests-1"))
    response = client.post("/admin/billing/billingrun/run/", {"window_start": "2026-11-22 04:00:00",
                                                              "in_background": "on"})
    assert response.status_code == 302
    assert "not handed to the workers" in " ".join(str(m) for m in get_messages(response.wsgi_request))
    assert not BillingRun.objects.exists()
