"""A Celery worker killed with SIGKILL half-way through a billing run, and one window enqueued three times.

Real `celery worker` processes (prefork) on the test database, as deployed: Redis when the suite has one
(PostgreSQL pass), else kombu's filesystem broker in a folder of the test's own (SQLite pass, the
embedded default of `make run`). Each run is stopped half-way on purpose: on PostgreSQL the test holds
one project's wallet row locked, so the worker waits inside that project's chunk with the chunks before
it committed; on SQLite the test takes the write lock once some chunks are in. Then the worker is
killed. Whatever happens next (the message redelivered, the window run again by the beat), every
project is charged exactly once for the window.
"""

import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.db.models import F

from billing.models import BillingChunk, BillingRun, Charge
from billing.tasks import billing_run_due, billing_run_window
from creditservice.celery import app
from creditservice.lib.money import credits_to_micros
from creditservice.testing.invariants import assert_books_balance
from metering.windows import last_closed_window
from wallets.models import Account, Transfer
from wallets.tests.factories import ProjectFactory

from .factories import usage

pytestmark = pytest.mark.django_db(transaction=True)

PROJECTS = 40  # so that on SQLite the test sees the run half-way (about 15 ms a chunk) before it ends
STALL_AT = 3  # the chunk (one project each) the worker is stopped in; chunks 0-2 are charged before it
# Seconds (BILLING_RUN_LEASE_SECONDS) after which a run whose worker died may be taken over: long enough
# that a redelivered task comes well inside it, short enough to wait for.
LEASE = "10"


@pytest.fixture(autouse=True)
def _shipped(shipped_data):
    shipped_data()


@pytest.fixture
def window():
    start, _ = last_closed_window()
    return start


@pytest.fixture
def projects(window):
    projects = [ProjectFactory(slug=f"k{i}", balance="10") for i in range(PROJECTS)]
    for project in projects:
        usage(project, "vm", window, "1")  # 0.04 credits each
    return projects


class Broker:
    """The worker's broker: Redis (its own keys wiped after) or a filesystem folder under tmp_path."""

    def __init__(self, tmp_path: Path):
        self.url = os.environ.get("TEST_REDIS_URL", "")
        self.env: dict[str, str] = {}
        self.options: dict = {}
        if not self.url:
            folder = tmp_path / "broker"
            self.url = "filesystem://"
            self.env = {"CELERY_FILESYSTEM_DIR": str(folder)}
            for sub in ("out", "processed", "control"):
                (folder / sub).mkdir(parents=True, exist_ok=True)
            self.options = {"control_folder": str(folder / "control"), "data_folder_in": str(folder / "out"),
                            "data_folder_out": str(folder / "out"), "processed_folder": str(folder / "processed"),
                            "store_processed": False}

    @property
    def redis(self) -> bool:
        return self.url.startswith("redis")

    def send(self, task, *args, **kwargs) -> None:
        """Through the worker's broker, not run in this process (the test settings run tasks eagerly)."""
        eager = app.conf.task_always_eager
        app.conf.task_always_eager = False
        try:
            with app.connection_for_write(self.url, transport_options=self.options or None) as conn:
                task.apply_async(args, kwargs, connection=conn)
        finally:
            app.conf.task_always_eager = eager

    def wipe(self) -> None:
        """Messages left unacknowledged by a killed worker would come back to a later run's worker."""
        if self.redis:
            import redis

            client = redis.Redis.from_url(self.url)
            client.delete("celery", "unacked", "unacked_index", "unacked_mutex")
            client.close()


@pytest.fixture
def broker(tmp_path):
    broker = Broker(tmp_path)
    broker.wipe()
    yield broker
    broker.wipe()


def _database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@contextmanager
def celery_worker(broker: Broker, log_path: Path, *, concurrency: int = 1, **settings_env: str):
    """`celery -A creditservice worker --pool=prefork`; yields the Popen (its own process group)."""
    env = {**os.environ, "DATABASE_URL": _database_url(), "CELERY_BROKER_URL": broker.url, **broker.env,
           "BILLING_CHUNK_SIZE": "1", "BILLING_PARALLEL_WORKERS": "0", **settings_env}
    env.pop("CELERY_TASK_ALWAYS_EAGER", None)
    with open(log_path, "a") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "creditservice", "worker", "--pool=prefork",
             f"--concurrency={concurrency}", "--loglevel=INFO", "--without-gossip", "--without-mingle",
             "--without-heartbeat", f"--hostname=faults-{os.getpid()}-{time.monotonic_ns()}@%h"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=django_settings.BASE_DIR)
    try:
        ready = log_path.stat().st_size
        assert _wait_for(lambda: " ready." in log_path.read_text()[ready:] or worker.poll() is not None, log_path,
                         seconds=60) and worker.poll() is None, "the worker did not start"
        yield worker
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGTERM)
            try:
                worker.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(timeout=10)


def _wait_for(condition, log_path: Path, seconds: float = 60, every: float = 0.05) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    print(log_path.read_text()[-6000:])  # shown by pytest when the test fails
    return False


def _done() -> int:
    return BillingChunk.objects.filter(status=BillingChunk.Status.DONE).count()


@contextmanager
def stalled_mid_run(projects, log_path: Path, start):
    """start() the run and hold its worker half-way: chunks 0 to STALL_AT - 1 (at least) committed, the
    rest not. Inside the block the worker is stopped there for certain; it goes on when the block ends."""
    if connection.vendor == "postgresql":
        db = connection.settings_dict
        with psycopg.connect(host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"],
                             password=db["PASSWORD"] or None, dbname=db["NAME"]) as blocker:
            blocker.execute("SELECT 1 FROM wallets_account WHERE project_id = %s FOR UPDATE", [projects[STALL_AT].id])
            start()
            assert _wait_for(lambda: _done() == STALL_AT and BillingChunk.objects.filter(
                index=STALL_AT, status=BillingChunk.Status.RUNNING).exists(), log_path), "the run did not stop half-way"
            yield
            blocker.rollback()
    else:
        # SQLite has one write lock: take it once a few chunks are in; the worker then waits for it.
        blocker = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None, timeout=30)
        try:
            start()
            assert _wait_for(lambda: _done() >= STALL_AT, log_path, every=0.002), "the run did not start"
            blocker.execute("BEGIN IMMEDIATE")
            assert STALL_AT <= _done() < PROJECTS, "the run ended before it could be stopped half-way"
            yield
            blocker.execute("ROLLBACK")
        finally:
            blocker.close()


def _pool_process_pid() -> int:
    """The one pool process (--concurrency=1) that charged the chunks so far: chunks record host:pid."""
    workers = set(BillingChunk.objects.exclude(worker="").values_list("worker", flat=True))
    assert len(workers) == 1, workers
    return int(workers.pop().rsplit(":", 1)[1])


def _each_project_charged_once(projects, window) -> None:
    assert Charge.objects.filter(window_start=window).count() == PROJECTS
    assert Transfer.objects.filter(kind=Transfer.Kind.USAGE).count() == PROJECTS
    balances = set(Account.objects.filter(project__in=projects).values_list("balance", flat=True))
    assert balances == {credits_to_micros("9.96")}
    assert_books_balance()


def _succeeded(window) -> bool:
    return BillingRun.objects.filter(window_start=window, status=BillingRun.Status.SUCCEEDED).exists()


def test_a_worker_killed_half_way_through_a_run_charges_every_project_once_when_the_window_is_run_again(
        projects, window, broker, tmp_path):
    log_path = tmp_path / "worker.log"
    with celery_worker(broker, log_path) as worker:
        with stalled_mid_run(projects, log_path, lambda: broker.send(billing_run_window, window.isoformat(),
                                                                     trigger="test")):
            os.killpg(worker.pid, signal.SIGKILL)  # the whole worker: no chance to give its message back
            worker.wait(timeout=30)
    assert 0 < Charge.objects.count() < PROJECTS
    assert BillingRun.objects.get(window_start=window).status == BillingRun.Status.RUNNING

    with celery_worker(broker, log_path):
        # Staff start the window again at once: the dead worker's run still holds its lease, nothing runs twice.
        broker.send(billing_run_window, window.isoformat(), trigger="again")
        assert _wait_for(lambda: "is already running" in log_path.read_text(), log_path)
        assert BillingRun.objects.get(window_start=window).attempt == 1
        # The lease runs out (its heartbeat is moved back by one), and the hourly beat takes the run over.
        lease = timedelta(seconds=django_settings.BILLING_RUN_LEASE_SECONDS)
        BillingRun.objects.filter(window_start=window).update(heartbeat_at=F("heartbeat_at") - lease)
        broker.send(billing_run_due)
        assert _wait_for(lambda: _succeeded(window), log_path)
    assert BillingRun.objects.get(window_start=window).attempt == 2
    _each_project_charged_once(projects, window)


@pytest.mark.redis  # a requeued message is marked redelivered by the Redis transport (kombu's filesystem one does not)
def test_a_pool_process_killed_half_way_is_redelivered_and_takes_the_run_over_after_the_lease(
        projects, window, broker, tmp_path):
    log_path = tmp_path / "worker.log"
    with celery_worker(broker, log_path, BILLING_RUN_LEASE_SECONDS=LEASE):
        with stalled_mid_run(projects, log_path, lambda: broker.send(billing_run_window, window.isoformat(),
                                                                     trigger="test")):
            os.kill(_pool_process_pid(), signal.SIGKILL)  # the worker lives on and gives the message back
        # The redelivered task finds the run still leased, checks back when the lease runs out, takes it over.
        assert _wait_for(lambda: _succeeded(window), log_path, seconds=90)
    text = log_path.read_text()
    assert "WorkerLostError" in text
    assert "retry: Retry in" in text  # the redelivered task came while the run was leased: it checked back
    assert BillingRun.objects.get(window_start=window).attempt == 2
    _each_project_charged_once(projects, window)


def test_one_window_enqueued_three_times_at_once_charges_each_project_once(projects, window, broker, tmp_path):
    log_path = tmp_path / "worker.log"
    with celery_worker(broker, log_path, concurrency=3):
        for _ in range(3):
            broker.send(billing_run_window, window.isoformat(), trigger="thrice")
        # Celery's own line per task ("Task name[id] succeeded in …"), not our task log line.
        assert _wait_for(lambda: _succeeded(window) and log_path.read_text().count("] succeeded in ") >= 3, log_path)
    assert log_path.read_text().count("] succeeded in ") == 3
    run = BillingRun.objects.get(window_start=window)
    assert run.attempt == 1 and run.charges_created == PROJECTS  # claimed once: the other two left at once
    _each_project_charged_once(projects, window)
