"""The bank test: many clients move credits between 20 wallets while a reader checks the books.

32 threads reserve, commit (whole or part), release, credit and debit at random through the API for
BANK_TEST_SECONDS (5 by default, 30 under CI=true), on PostgreSQL and on SQLite (there every write
queues for the one write lock: expect lower throughput, never an error). Meanwhile a reader takes one
snapshot of the books every 50 ms (PostgreSQL: one REPEATABLE READ transaction; SQLite: one read
transaction, which in WAL mode sees one committed state) and checks, in that snapshot:

- the books balance: every wallet counted by its cached balance plus every system account counted by
  its transfers sums to exactly 0 micro-credits (credits enter a wallet only from a system account and
  leave only to one, so money is neither made nor lost; a balance moved without its transfer, or a
  transfer committed without its balance, shows as a non-zero sum);
- each wallet's cached balance equals the sum of its own transfers;
- no wallet's available (balance - reserved) is below zero: debits need funds, commits take at most
  what is held, and nothing else takes credits out in this workload;
- each wallet's and quota's `reserved` equals the holds of its pending reservations.

Every answer is a success or a documented refusal: a deadlock, a serialization failure or a lock
timeout must be dealt with inside the service, never reach a client as a 5xx.
"""

import os
import sqlite3
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import psycopg
import pytest
from django.db import connection

from creditservice.testing.fixtures import ServiceClient
from creditservice.testing.invariants import assert_books_balance
from creditservice.testing.workload import MixedClient, Tally
from quotas.models import Quota, Reservation, ResourceType
from quotas.tests.test_concurrency_mixed import _call_with
from wallets.models import Account, Transfer
from wallets.tests.factories import ProjectFactory, platform_key

pytestmark = pytest.mark.django_db(transaction=True)

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
SECONDS = float(os.environ.get("BANK_TEST_SECONDS") or (30 if CI else 5))
WALLETS = 20
WORKERS = 32
READ_EVERY = 0.05

_ACCOUNT = Account._meta.db_table
_TRANSFER = Transfer._meta.db_table
_RESERVATION = Reservation._meta.db_table
_QUOTA = Quota._meta.db_table

# One snapshot of the books: (wallet id, project id, cached balance, reserved) per wallet; the ids of the
# system accounts; each account's balance from its transfers; pending holds per project and per quota.
SNAPSHOT_QUERIES = {
    "wallets": f"SELECT id, project_id, balance, reserved FROM {_ACCOUNT} WHERE kind = 'wallet'",
    "system": f"SELECT id FROM {_ACCOUNT} WHERE kind = 'system'",
    "credited": f"SELECT credit_account_id, SUM(amount), COUNT(*) FROM {_TRANSFER} GROUP BY credit_account_id",
    "debited": f"SELECT debit_account_id, SUM(amount) FROM {_TRANSFER} GROUP BY debit_account_id",
    "held": f"SELECT project_id, SUM(amount) FROM {_RESERVATION} WHERE status = 'pending' GROUP BY project_id",
    "quota_held": (f"SELECT project_id, resource_type_id, SUM(quantity) FROM {_RESERVATION} WHERE status = 'pending' "
                   "GROUP BY project_id, resource_type_id"),
    "quotas": f"SELECT project_id, resource_type_id, reserved FROM {_QUOTA}",
}


@dataclass
class Reading:
    total: int  # micro-credits: wallets by cached balance + system accounts by transfers; must be 0
    transfers: int
    drifts: list[str]


def books_of(rows: dict[str, list[tuple]]) -> Reading:
    derived: Counter = Counter()
    transfers = 0
    for account_id, amount, count in rows["credited"]:
        derived[account_id] += int(amount)
        transfers += count
    for account_id, amount in rows["debited"]:
        derived[account_id] -= int(amount)
    held = {project_id: int(amount) for project_id, amount in rows["held"]}
    quota_held = {(p, t): int(q) for p, t, q in rows["quota_held"]}
    drifts = []
    total = sum(derived[account_id] for (account_id,) in rows["system"])
    for account_id, project_id, balance, reserved in rows["wallets"]:
        total += balance
        if balance != derived[account_id]:
            drifts.append(f"wallet {account_id}: cached balance {balance} != {derived[account_id]} from its transfers")
        if balance - reserved < 0:
            drifts.append(f"wallet {account_id}: available {balance - reserved} below zero")
        if reserved != held.get(project_id, 0):
            drifts.append(f"wallet {account_id}: reserved {reserved} != {held.get(project_id, 0)} held by pending reservations")
    for project_id, type_id, reserved in rows["quotas"]:
        if reserved != quota_held.get((project_id, type_id), 0):
            drifts.append(f"quota {project_id}/{type_id}: reserved {reserved} != {quota_held.get((project_id, type_id), 0)} pending")
    if total != 0:
        drifts.append(f"the books sum to {total} micro-credits, not 0")
    return Reading(total=total, transfers=transfers, drifts=drifts)


class SnapshotReader:
    """Reads the books in one snapshot, on a connection of its own (not Django's: on SQLite Django begins
    every transaction IMMEDIATE, i.e. as a writer, and a reader must not take the write lock)."""

    def __init__(self):
        settings = connection.settings_dict
        self.vendor = connection.vendor
        if self.vendor == "postgresql":
            self.conn = psycopg.connect(host=settings["HOST"] or "127.0.0.1", port=settings["PORT"] or 5432,
                                        user=settings["USER"], password=settings["PASSWORD"] or None,
                                        dbname=settings["NAME"], autocommit=True)
        else:
            self.conn = sqlite3.connect(settings["NAME"], isolation_level=None, timeout=20)

    def read(self) -> Reading:
        cursor = self.conn.cursor()
        if self.vendor == "postgresql":
            cursor.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        else:
            cursor.execute("BEGIN DEFERRED")  # the snapshot starts at the first read and lasts until COMMIT
        try:
            rows = {}
            for name, sql in SNAPSHOT_QUERIES.items():
                cursor.execute(sql)
                rows[name] = cursor.fetchall()
        finally:
            cursor.execute("COMMIT")
        return books_of(rows)

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def raw_key() -> str:
    # A transactional test's database was flushed by the one before it: ship the type again.
    ResourceType.objects.get_or_create(code="vm", defaults={"display_name": "vm", "unit": "vm"})
    return platform_key()


def _run_bank(raw_key: str, slugs: list[str], seconds: float) -> tuple[Tally, list[Reading]]:
    stop = threading.Event()
    readings: list[Reading] = []

    def client(i: int) -> Tally:
        try:
            walker = MixedClient(_call_with(ServiceClient(raw_key, raise_request_exception=False)), slugs=slugs,
                                 name=f"bank{i}", seed=7000 + i)
            while not stop.is_set():
                walker.step()
            walker.finish()
            return walker.tally
        finally:
            connection.close()

    def reader() -> None:
        books = SnapshotReader()
        try:
            while not stop.is_set():
                readings.append(books.read())
                stop.wait(READ_EVERY)
            readings.append(books.read())
        finally:
            books.close()

    total = Tally()
    with ThreadPoolExecutor(max_workers=WORKERS + 1) as pool:
        watching = pool.submit(reader)
        clients = [pool.submit(client, i) for i in range(WORKERS)]
        time.sleep(seconds)
        stop.set()
        for future in clients:
            total.merge(future.result(timeout=300))
        watching.result(timeout=60)
    return total, readings


def test_every_snapshot_of_the_books_balances_while_32_clients_move_credits(raw_key):
    slugs = [f"bank-{i:02d}" for i in range(WALLETS)]
    for slug in slugs:
        ProjectFactory(slug=slug, balance="100")
    before = Transfer.objects.count()

    tally, readings = _run_bank(raw_key, slugs, SECONDS)

    print(f"{connection.vendor}: {tally.calls} calls in {SECONDS:g} s by {WORKERS} clients "
          f"({tally.calls / SECONDS:.0f}/s), {len(readings)} snapshots read; answers {dict(tally.statuses)}")
    assert tally.server_errors == 0, tally.unexpected[:10]
    assert tally.unexpected == []
    bad = [(i, r.drifts) for i, r in enumerate(readings) if r.drifts]
    assert bad == [], f"{len(bad)} of {len(readings)} snapshots were off, first: {bad[:3]}"
    # The reader ran while the books moved: it saw many different states, not one before and one after.
    assert len({r.transfers for r in readings}) >= 3
    assert readings[-1].transfers > before
    assert not Reservation.objects.filter(status=Reservation.Status.PENDING).exists()
    assert_books_balance()
