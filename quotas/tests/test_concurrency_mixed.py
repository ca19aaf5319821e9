"""Concurrent clients mixing credits, debits, reservations, commits and releases, on every backend.

On SQLite (the embedded default) this is what `make run` meets first: a deferred transaction that reads
and then writes fails at once with "database is locked" when another writer holds the file, whatever
the busy timeout. Transactions that take the write lock when they begin wait instead.
"""

import json
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from creditservice.testing.fixtures import ServiceClient
from creditservice.testing.workload import MixedClient, Tally
from quotas.models import Reservation, ResourceType
from quotas.tests.helpers import ledger_is_consistent
from wallets.models import Account
from wallets.tests.factories import ProjectFactory, platform_key

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def raw_key() -> str:
    # A transactional test's database was flushed by the one before it: ship the type again.
    ResourceType.objects.get_or_create(code="vm", defaults={"display_name": "vm", "unit": "vm"})
    return platform_key()


def _call_with(client: ServiceClient):
    def call(method: str, path: str, body: dict | None, key: str | None):
        extra = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
        response = client.generic(method, path, data=json.dumps(body or {}), content_type="application/json", **extra)
        try:
            return response.status_code, response.json()
        except ValueError:
            return response.status_code, None
    return call


def _run_clients(raw_key: str, *, clients: int, calls: int, slugs: list[str]) -> Tally:
    def walk(i: int) -> Tally:
        try:
            walker = MixedClient(_call_with(ServiceClient(raw_key, raise_request_exception=False)), slugs=slugs, name=f"c{i}", seed=1000 + i)
            for _ in range(calls):
                walker.step()
            walker.finish()
            return walker.tally
        finally:
            connection.close()

    total = Tally()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        for tally in pool.map(walk, range(clients)):
            total.merge(tally)
    return total


def test_four_clients_mixing_credits_and_reservations_never_see_a_server_error(raw_key):
    for slug in ("p0", "p1"):
        ProjectFactory(slug=slug, balance="20")
    tally = _run_clients(raw_key, clients=4, calls=25, slugs=["p0", "p1"])
    assert tally.unexpected == []
    assert tally.calls >= 100
    assert not Reservation.objects.filter(status=Reservation.Status.PENDING).exists()
    assert set(Account.objects.filter(project__slug__in=["p0", "p1"]).values_list("reserved", flat=True)) == {0}
    assert ledger_is_consistent()


def test_eight_clients_soak_leaves_no_server_error_and_a_clean_ledger(raw_key):
    """The bounded version of `make soak`: eight clients, about thirty calls each, three projects."""
    slugs = ["s0", "s1", "s2"]
    for slug in slugs:
        ProjectFactory(slug=slug, balance="30")
    tally = _run_clients(raw_key, clients=8, calls=30, slugs=slugs)
    assert tally.unexpected == []
    assert tally.server_errors == 0
    assert ledger_is_consistent()
