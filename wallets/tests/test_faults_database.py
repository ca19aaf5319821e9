"""The database fails under a request: a deadlock is retried inside; a lost backend is a retryable 503
in the error shape, and a retry with the same Idempotency-Key has exactly one effect.

PostgreSQL only: these terminate a server backend (pg_terminate_backend) or make two transactions
deadlock, and SQLite has neither a backend to terminate nor row locks to deadlock on (its one write
lock is taken at BEGIN, so two writers queue instead).
"""

import threading
import time

import psycopg
import pytest
from django.db import connection

from creditservice.testing.fixtures import ServiceClient
from creditservice.testing.invariants import assert_books_balance
from quotas.models import Quota, Reservation, ResourceType
from wallets.models import Account, IdempotencyRecord, Transfer
from wallets.tests.factories import ProjectFactory, platform_key

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

CREDIT = "/api/v1/projects/acme/wallet/credit"
RESERVE = "/api/v1/reservations"


@pytest.fixture
def raw_key() -> str:
    ResourceType.objects.get_or_create(code="vm", defaults={"display_name": "vm", "unit": "vm"})
    ProjectFactory(slug="acme", balance="10")
    return platform_key()


def _connect(autocommit: bool = True) -> psycopg.Connection:
    # Autocommit for the watchers: inside a transaction pg_stat_activity keeps showing its first snapshot.
    db = connection.settings_dict
    return psycopg.connect(host=db["HOST"] or "127.0.0.1", port=db["PORT"] or 5432, user=db["USER"],
                           password=db["PASSWORD"] or None, dbname=db["NAME"], autocommit=autocommit)


def _wallet_id() -> int:
    return Account.objects.get(project__slug="acme").id


def _waiting_on(blocker: psycopg.Connection, answered: list, seconds: float = 30) -> int:
    """The pid of the backend that waits for a lock the blocker holds (the request's, in its transaction)."""
    blocker_pid = blocker.info.backend_pid
    with _connect() as watcher:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            row = watcher.execute("SELECT pid FROM pg_stat_activity WHERE %s = ANY(pg_blocking_pids(pid))",
                                  [blocker_pid]).fetchone()
            if row:
                return row[0]
            assert not answered, f"the request answered before it reached the lock: {answered}"
            time.sleep(0.02)
        activity = watcher.execute("SELECT pid, state, wait_event_type, wait_event, left(query, 120) "
                                   "FROM pg_stat_activity WHERE datname = current_database()").fetchall()
    raise AssertionError(f"no request came to wait on the blocker's lock: {activity}")


def _in_thread(function) -> tuple[threading.Thread, list]:
    result: list = []

    def run():
        try:
            result.append(function())
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread, result


def _terminated_mid_request(send) -> object:
    """Run send() in a thread; once its transaction waits on the acme wallet's row lock, terminate its backend."""
    with _connect(autocommit=False) as blocker:
        blocker.execute("SELECT 1 FROM wallets_account WHERE id = %s FOR UPDATE", [_wallet_id()])
        thread, result = _in_thread(send)
        victim = _waiting_on(blocker, result)
        with _connect() as admin:
            assert admin.execute("SELECT pg_terminate_backend(%s)", [victim]).fetchone()[0]
        blocker.rollback()
    thread.join(timeout=60)
    assert result, "the request did not answer"
    return result[0]


def _assert_retryable(response) -> None:
    assert response.status_code == 503, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["error"] == "database_unavailable"
    assert "detail" in response.json()
    assert int(response["Retry-After"]) >= 1


def test_a_credit_whose_backend_is_terminated_is_a_503_and_its_retry_credits_once(raw_key):
    client = ServiceClient(raw_key, raise_request_exception=False)
    body = {"amount": "5", "reason": "terminated"}
    failed = _terminated_mid_request(lambda: client.post(CREDIT, body, format="json", HTTP_IDEMPOTENCY_KEY="k1"))
    _assert_retryable(failed)
    assert not Transfer.objects.filter(reason="terminated").exists()

    retried = client.post(CREDIT, body, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert retried.status_code == 201, retried.json()
    again = client.post(CREDIT, body, format="json", HTTP_IDEMPOTENCY_KEY="k1")
    assert again.status_code == 201 and again["Idempotent-Replayed"] == "true"
    assert Transfer.objects.filter(reason="terminated").count() == 1
    assert Account.objects.get(project__slug="acme").balance == 15_000_000
    assert IdempotencyRecord.objects.filter(key="k1").count() == 1
    assert_books_balance()


def test_a_reservation_whose_backend_is_terminated_is_a_503_and_its_retry_holds_once(raw_key):
    client = ServiceClient(raw_key, raise_request_exception=False)
    body = {"project": "acme", "resource_type": "vm", "quantity": "1", "amount": "4"}
    failed = _terminated_mid_request(lambda: client.post(RESERVE, body, format="json", HTTP_IDEMPOTENCY_KEY="r1"))
    _assert_retryable(failed)
    assert not Reservation.objects.exists()

    retried = client.post(RESERVE, body, format="json", HTTP_IDEMPOTENCY_KEY="r1")
    assert retried.status_code == 201, retried.json()
    replayed = client.post(RESERVE, body, format="json", HTTP_IDEMPOTENCY_KEY="r1")
    assert replayed.status_code == 201 and replayed.json()["id"] == retried.json()["id"]
    assert Reservation.objects.count() == 1
    assert Account.objects.get(project__slug="acme").reserved == 4_000_000
    assert Quota.objects.get(project__slug="acme").reserved == 1_000_000
    assert_books_balance()


def test_the_next_request_on_the_same_thread_gets_a_working_connection(raw_key):
    """The web worker's connection died with the backend: the request after the 503 must not inherit it."""
    client = ServiceClient(raw_key, raise_request_exception=False)

    def credit_then_read():
        failed = client.post(CREDIT, {"amount": "1", "reason": "x"}, format="json", HTTP_IDEMPOTENCY_KEY="k2")
        return failed, client.get("/api/v1/projects/acme/wallet")

    failed, after = _terminated_mid_request(credit_then_read)
    _assert_retryable(failed)
    assert after.status_code == 200, after.content[:300]
    assert after.json()["balance"] == "10"


# --- Deadlocks: the request is the victim, the service retries its transaction --------------------------
# The other side of each deadlock is a connection that takes the request's rows in the opposite order
# (our own transactions share one lock order and cannot deadlock each other). It waits longer than the
# request before it looks for a deadlock, so PostgreSQL always picks the request as the victim.

def _patient(conn: psycopg.Connection) -> psycopg.Connection:
    conn.execute("SET deadlock_timeout = '60s'")
    return conn


def test_a_reservation_chosen_as_a_deadlock_victim_is_retried_and_answers_201(raw_key):
    from quotas.tests.helpers import set_quota
    from wallets.models import Project

    set_quota(Project.objects.get(slug="acme"), "vm", None)
    client = ServiceClient(raw_key, raise_request_exception=False)
    body = {"project": "acme", "resource_type": "vm", "quantity": "1", "amount": "4"}
    with _patient(_connect(autocommit=False)) as other:
        other.execute("SELECT 1 FROM quotas_quota WHERE project_id = (SELECT id FROM wallets_project WHERE slug = "
                      "'acme') FOR UPDATE")
        thread, result = _in_thread(lambda: client.post(RESERVE, body, format="json", HTTP_IDEMPOTENCY_KEY="d1"))
        _waiting_on(other, result)  # the request holds the wallet row and waits for the quota row
        other.execute("UPDATE wallets_account SET reserved = reserved WHERE id = %s", [_wallet_id()])  # the cycle
        other.rollback()
    thread.join(timeout=60)
    response = result[0]
    assert response.status_code == 201, (response.status_code, response.content[:500])
    assert Reservation.objects.count() == 1
    assert Account.objects.get(project__slug="acme").reserved == 4_000_000
    assert_books_balance()


def test_a_credit_chosen_as_a_deadlock_victim_is_retried_and_credits_once(raw_key):
    client = ServiceClient(raw_key, raise_request_exception=False)
    body = {"amount": "5", "reason": "deadlocked"}
    with _connect(autocommit=False) as gate, _patient(_connect(autocommit=False)) as other:
        gate.execute("SELECT 1 FROM wallets_account WHERE id = %s FOR UPDATE", [_wallet_id()])
        thread, result = _in_thread(lambda: client.post(CREDIT, body, format="json", HTTP_IDEMPOTENCY_KEY="d2"))
        _waiting_on(gate, result)  # the key is claimed; the request waits for the wallet row
        other.execute("SELECT 1 FROM wallets_idempotencyrecord WHERE key = 'd2' FOR UPDATE")
        gate.rollback()
        _waiting_on(other, result)  # the request moved the wallet and waits to store its answer
        other.execute("UPDATE wallets_account SET reserved = reserved WHERE id = %s", [_wallet_id()])  # the cycle
        other.rollback()
    thread.join(timeout=60)
    response = result[0]
    assert response.status_code == 201, (response.status_code, response.content[:500])
    assert Transfer.objects.filter(reason="deadlocked").count() == 1
    assert Account.objects.get(project__slug="acme").balance == 15_000_000
    replayed = client.post(CREDIT, body, format="json", HTTP_IDEMPOTENCY_KEY="d2")
    assert replayed.status_code == 201 and replayed["Idempotent-Replayed"] == "true"
    assert_books_balance()
