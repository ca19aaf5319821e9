"""A reservation met at once by a commit, a release and the expiry task ends once, on every backend.

Each of 100 reservations gets three threads released together by a barrier: a client committing it
(half of them in part), a client releasing it, and the expiry task running as if it were late (its
clock past the reservation's expires_at; the clients' clocks are not). Exactly one of the three may
win; the other two are told the reservation already ended (409) or, for the task, that there was
nothing to expire. The ledger must show exactly that one resolution.
"""

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from creditservice.testing.fixtures import ServiceClient
from creditservice.testing.invariants import assert_books_balance
from quotas.models import Quota, Reservation, ResourceType
from quotas.services import reservation_expire
from quotas.tests.helpers import reserve, units
from wallets.models import Account, Transfer
from wallets.tests.factories import ProjectFactory, platform_key

pytestmark = pytest.mark.django_db(transaction=True)

RESERVATIONS = 100
AT_ONCE = 8  # reservations raced at the same time: 24 threads


@pytest.fixture
def raw_key() -> str:
    ResourceType.objects.get_or_create(code="vm", defaults={"display_name": "vm", "unit": "vm"})
    return platform_key()


def _race(raw_key: str, reservation: dict, commit_amount: str | None) -> dict[str, object]:
    """Commit, release and expire one reservation at the same moment; what each of the three was told."""
    barrier = threading.Barrier(3, timeout=60)
    late = timezone.now() + timedelta(hours=1)  # the expiry task's clock: past expires_at (ttl 600 s)
    path = f"/api/v1/reservations/{reservation['id']}"

    def commit():
        client = ServiceClient(raw_key, raise_request_exception=False)
        barrier.wait()
        response = client.post(f"{path}/commit", {} if commit_amount is None else {"amount": commit_amount},
                               format="json")
        return response.status_code, response.json()

    def release():
        client = ServiceClient(raw_key, raise_request_exception=False)
        barrier.wait()
        response = client.post(f"{path}/release", format="json")
        return response.status_code, response.json()

    def expire():
        barrier.wait()
        return reservation_expire(reservation_id=reservation["id"], now=late)

    def closing(function):
        try:
            return function()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = {name: pool.submit(closing, f) for name, f in (("commit", commit), ("release", release),
                                                                 ("expire", expire))}
        return {name: future.result(timeout=120) for name, future in futures.items()}


def test_each_of_100_reservations_raced_by_commit_release_and_expiry_ends_exactly_once(raw_key):
    ProjectFactory(slug="acme", balance="1000")
    client = ServiceClient(raw_key)
    created = []
    for i in range(RESERVATIONS):
        response = reserve(client, amount="4", quantity="1", key=f"race-{i}", ttl_seconds=600)
        assert response.status_code == 201, response.json()
        created.append(response.json())
    balance_before = Account.objects.get(project__slug="acme").balance
    assert Account.objects.get(project__slug="acme").reserved == RESERVATIONS * 4_000_000

    def race(i: int):
        return _race(raw_key, created[i], None if i % 2 else "1.5")

    with ThreadPoolExecutor(max_workers=AT_ONCE) as pool:
        told = list(pool.map(race, range(RESERVATIONS)))

    winners = {"commit": 0, "release": 0, "expire": 0}
    charged = 0
    for reservation, answers in zip(created, told, strict=True):
        (commit_status, commit_body), (release_status, release_body) = answers["commit"], answers["release"]
        won = [name for name, did in (("commit", commit_status == 200), ("release", release_status == 200),
                                      ("expire", answers["expire"] is True)) if did]
        assert len(won) == 1, (reservation["id"], answers)
        winner = won[0]
        winners[winner] += 1
        ended = {"commit": "committed", "release": "released", "expire": "expired"}[winner]
        # The losers were told who won (409 naming the state), never a 5xx.
        for status, body in ((commit_status, commit_body), (release_status, release_body)):
            assert status == 200 or (status == 409 and body["error"] == f"reservation_{ended}"), (reservation["id"], answers)
        row = Reservation.objects.get(id=reservation["id"])
        assert row.status == ended
        transfers = list(Transfer.objects.filter(reference=f"reservation:{reservation['id']}"))
        if winner == "commit":
            assert len(transfers) == 1 and transfers[0].kind == Transfer.Kind.RESERVATION
            assert transfers[0].amount == row.committed_amount == (4_000_000 if commit_body["committed_amount"] == "4"
                                                                     else 1_500_000)
            charged += transfers[0].amount
        else:
            assert transfers == [] and row.committed_amount is None

    print(f"{connection.vendor}: winners {winners}")
    wallet = Account.objects.get(project__slug="acme")
    assert wallet.reserved == 0
    assert wallet.balance == balance_before - charged
    quota = Quota.objects.get(project__slug="acme", resource_type__code="vm")
    assert quota.reserved == 0
    assert quota.used == units(str(winners["commit"]))
    assert_books_balance()
