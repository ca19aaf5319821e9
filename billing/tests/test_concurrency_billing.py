"""Runs and workers at once, with real threads (both backends) and processes (PostgreSQL): every unit of usage is charged once."""

import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import psycopg
import pytest
from django.db import connection

from billing.models import BillingChunk, BillingRun, Charge
from billing.services import billing_run_claim, billing_run_work, charging, runs
from billing.tasks import billing_run_window
from creditservice.celery import app
from creditservice.lib.money import credits_to_micros
from wallets.models import Account, Transfer
from wallets.selectors import ledger_check
from wallets.tests.factories import ProjectFactory

from .conftest import HOUR, WINDOW
from .factories import bill, usage

# Real threads on every backend; the Celery worker test below needs PostgreSQL (it says why).
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _shipped(shipped_data):
    shipped_data()


def _projects_with_usage(count: int):
    projects = [ProjectFactory(slug=f"p{i}", balance="10") for i in range(count)]
    for project in projects:
        usage(project, "vm", WINDOW, "1")
        usage(project, "network_egress_gib", WINDOW, "2")
    return projects


def _in_threads(function, count: int):
    def call(i):
        try:
            return function(i)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(call, range(count)))


def _each_charged_once(projects):
    assert Charge.objects.count() == 2 * len(projects)
    assert Transfer.objects.filter(kind=Transfer.Kind.USAGE).count() == 2 * len(projects)
    balances = set(Account.objects.filter(project__in=projects).values_list("balance", flat=True))
    assert balances == {credits_to_micros("9.94")}  # 10 - 0.04 - 0.02
    assert ledger_check().ok


def test_two_runs_of_one_window_at_once_bill_it_once(clock, settings):
    settings.BILLING_CHUNK_SIZE = 3
    projects = _projects_with_usage(12)
    outcomes = _in_threads(lambda i: bill(WINDOW), 4)
    assert sum(o.claimed for o in outcomes) == 1
    assert all("already running" in o.message for o in outcomes if not o.claimed)
    _each_charged_once(projects)
    assert BillingRun.objects.get().status == BillingRun.Status.SUCCEEDED


def test_workers_share_the_chunks_of_one_run(clock, settings):
    settings.BILLING_CHUNK_SIZE = 2
    projects = _projects_with_usage(12)
    run = billing_run_claim(window_start=WINDOW, trigger="test").run
    runs.billing_run_plan(run=run)
    done = _in_threads(lambda i: billing_run_work(run_id=run.id), 4)
    assert sum(done) == 6  # every chunk taken by exactly one worker
    _each_charged_once(projects)
    run.refresh_from_db()
    assert run.status == BillingRun.Status.SUCCEEDED and run.charges_created == 24


def test_overlapping_chunk_work_without_the_run_lock_still_charges_once(clock):
    # Defence in depth: even if two workers charged the same projects at once (a takeover racing a
    # slow worker), the wallet locks and the deterministic keys let each charge through once.
    projects = _projects_with_usage(10)
    run = billing_run_claim(window_start=WINDOW, trigger="test").run
    first, last = projects[0].id, projects[-1].id
    results = _in_threads(lambda i: charging.charge_chunk(
        first_project_id=first, last_project_id=last, window_start=WINDOW, late_since=None,
        late_from=WINDOW - 48 * HOUR, run_id=run.id), 6)
    assert sum(r.charges for r in results) == 20
    assert not any(r.failures for r in results)
    _each_charged_once(projects)


def test_a_run_that_meets_other_writers_charges_every_project(clock, settings):
    """Admission keeps writing while a run bills: on SQLite a deferred transaction that met another
    writer failed at once ("database is locked") and the run ended partial with nothing charged."""
    from wallets import services as wallet_services

    settings.BILLING_CHUNK_SIZE = 2
    projects = _projects_with_usage(8)
    stop = False

    def write_meanwhile(i):
        n = 0
        while not stop and n < 200:
            n += 1
            wallet_services.wallet_credit(project=projects[i], amount=1, reason="meanwhile",
                                          idempotency_key=f"meanwhile:{i}:{n}", actor="system")
        return n

    with ThreadPoolExecutor(max_workers=3) as pool:
        writers = [pool.submit(lambda i=i: _closing(write_meanwhile, i)) for i in range(2)]
        outcome = pool.submit(lambda: _closing(bill, WINDOW)).result(timeout=120)
        stop = True
        credits = sum(w.result(timeout=120) for w in writers)
    run = BillingRun.objects.get()
    assert run.status == BillingRun.Status.SUCCEEDED, (outcome.message, run.error)
    assert Charge.objects.count() == 2 * len(projects)
    assert Transfer.objects.filter(kind=Transfer.Kind.USAGE).count() == 2 * len(projects)
    assert Transfer.objects.filter(reason="meanwhile").count() == credits
    assert ledger_check().ok


def _closing(function, *args):
    try:
        return function(*args)
    finally:
        connection.close()


# PostgreSQL only: it holds one wallet row locked (SELECT ... FOR UPDATE) from a second connection while
# the others are charged; SQLite has no row locks, its write lock would stop every chunk at once.
@pytest.mark.postgres
@pytest.mark.redis
def test_celery_worker_processes_take_the_chunks_of_one_run_in_parallel(tmp_path):
    """As deployed: the admin's task on a real `celery worker` (prefork, two processes). The first
    chunk's wallet is held locked by the test, so whichever process takes that chunk waits on it:
    the other chunks can only finish if another process takes them at the same time."""
    from metering.windows import last_closed_window

    window, _ = last_closed_window()
    projects = [ProjectFactory(slug=f"p{i}", balance="10") for i in range(4)]
    for project in projects:
        usage(project, "vm", window, "1")
    with _celery_worker(tmp_path, BILLING_CHUNK_SIZE="1", BILLING_PARALLEL_WORKERS="1") as (log_path, broker):
        with psycopg.connect(_libpq_url(), autocommit=False) as blocker:
            blocker.execute("SELECT 1 FROM wallets_account WHERE project_id = %s FOR UPDATE", [projects[0].id])
            _send_to_worker(broker, billing_run_window, window.isoformat(), trigger="test")
            others_done = _wait_for(lambda: BillingChunk.objects.filter(status="done").count() == 3, log_path)
            blocker.rollback()
        assert others_done, "three chunks should finish while the fourth waits on its wallet"
        assert _wait_for(lambda: BillingRun.objects.filter(window_start=window, status="succeeded").exists(), log_path)
    workers = set(BillingChunk.objects.values_list("worker", flat=True))
    assert len(workers) == 2 and all(not w.endswith(f":{os.getpid()}") for w in workers)
    assert Charge.objects.count() == 4
    assert set(Account.objects.filter(project__in=projects).values_list("balance", flat=True)) == {credits_to_micros("9.96")}
    assert ledger_check().ok


def _send_to_worker(broker: str, task, *args, **kwargs) -> None:
    """Through the worker's broker, not run in this process (the test settings run tasks eagerly)."""
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = False
    try:
        with app.connection_for_write(broker) as conn:
            task.apply_async(args, kwargs, connection=conn)
    finally:
        app.conf.task_always_eager = eager


def _libpq_url() -> str:
    db = connection.settings_dict
    return f"postgresql://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@contextmanager
def _celery_worker(tmp_path, **settings_env: str):
    """`celery -A creditservice worker` (prefork, 2 processes) on the test database, on its own Redis db."""
    broker = os.environ["TEST_REDIS_URL"].rsplit("/", 1)[0] + "/12"
    env = {**os.environ, "DATABASE_URL": _libpq_url(), "CELERY_BROKER_URL": broker, **settings_env}
    log_path = tmp_path / "worker.log"
    subprocess.run([sys.executable, "-m", "celery", "-A", "creditservice", "purge", "-f"], env=env, capture_output=True,
                   timeout=60, check=True)
    with open(log_path, "w") as log:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "creditservice", "worker", "--pool=prefork", "--concurrency=2",
             "--loglevel=INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        assert _wait_for(lambda: " ready." in log_path.read_text(), log_path, seconds=60), "the worker did not start"
        yield log_path, broker
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)


def _wait_for(condition, log_path, seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    print(log_path.read_text()[-5000:])  # shown by pytest when the test fails
    return False
