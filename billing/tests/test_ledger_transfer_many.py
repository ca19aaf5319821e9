"""wallets.ledger.transfer_many, the set-based path of the billing batch."""

import json
import threading
import time

import pytest
from django.db import IntegrityError, connection, transaction

from wallets import ledger
from wallets.models import Account, Transfer
from wallets.selectors import ledger_check
from wallets.tests.factories import ProjectFactory

pytestmark = pytest.mark.django_db


def _out(transfers):
    return ledger.transfer_many(transfers=transfers, direction="out", system_code="revenue", kind=Transfer.Kind.USAGE,
                                reason="usage charge").ids


def test_it_moves_each_amount_once_and_keeps_the_ledger_balanced():
    acme, beta = ProjectFactory(slug="acme", balance="1"), ProjectFactory(slug="beta", balance="1")
    batch = [ledger.BulkTransfer(project_id=acme.id, amount=300_000, idempotency_key="k1", metadata_json=json.dumps({"a": 1})),
             ledger.BulkTransfer(project_id=acme.id, amount=900_000, idempotency_key="k2"),
             ledger.BulkTransfer(project_id=beta.id, amount=100_000, idempotency_key="k3")]
    ids = _out(batch)
    again = _out(batch)

    assert ids == again and set(ids) == {"k1", "k2", "k3"}
    assert Account.objects.get(project=acme).balance == -200_000  # usage may overdraw
    assert Account.objects.get(project=beta).balance == 900_000
    assert list(Transfer.objects.filter(idempotency_key__in=["k1", "k2"]).order_by("id").values_list("wallet_balance_after", flat=True)) == [700_000, -200_000]
    assert Transfer.objects.get(idempotency_key="k1").metadata == {"a": 1}
    assert ledger_check().ok


def test_a_batch_with_a_key_already_used_moves_only_the_new_ones():
    acme = ProjectFactory(slug="acme", balance="1")
    _out([ledger.BulkTransfer(project_id=acme.id, amount=100_000, idempotency_key="k1")])
    _out([ledger.BulkTransfer(project_id=acme.id, amount=100_000, idempotency_key="k1"),
          ledger.BulkTransfer(project_id=acme.id, amount=200_000, idempotency_key="k2")])
    assert Account.objects.get(project=acme).balance == 700_000
    assert ledger_check().ok


def test_repeated_keys_or_non_positive_amounts_are_refused():
    acme = ProjectFactory(slug="acme", balance="1")
    with pytest.raises(ValueError):
        _out([ledger.BulkTransfer(project_id=acme.id, amount=1, idempotency_key="k")] * 2)
    with pytest.raises(ValueError):
        _out([ledger.BulkTransfer(project_id=acme.id, amount=0, idempotency_key="z")])
    assert Account.objects.get(project=acme).balance == 1_000_000


def test_credits_back_to_wallets_with_each_balance_after():
    acme = ProjectFactory(slug="acme", balance="1")
    ids = ledger.transfer_many(
        transfers=[ledger.BulkTransfer(project_id=acme.id, amount=200_000, idempotency_key="r1"),
                   ledger.BulkTransfer(project_id=acme.id, amount=50_000, idempotency_key="r2")],
        direction="in", system_code="revenue", kind=Transfer.Kind.REVERSAL, reason="usage credit-back").ids
    assert Account.objects.get(project=acme).balance == 1_250_000
    assert [Transfer.objects.get(id=ids[k]).wallet_balance_after for k in ("r1", "r2")] == [1_200_000, 1_250_000]
    assert Transfer.objects.get(id=ids["r1"]).credit_account.project_id == acme.id
    assert ledger_check().ok


def test_it_names_the_wallets_an_outgoing_batch_left_unfunded():
    acme, beta = ProjectFactory(slug="acme", balance="1"), ProjectFactory(slug="beta", balance="1")
    moved = ledger.transfer_many(
        transfers=[ledger.BulkTransfer(project_id=acme.id, amount=1_000_000, idempotency_key="k1"),
                   ledger.BulkTransfer(project_id=beta.id, amount=999_999, idempotency_key="k2")],
        direction="out", system_code="revenue", kind=Transfer.Kind.USAGE, reason="usage charge")
    assert moved.unfunded == [acme.id]  # exactly zero left is unfunded; one micro-credit is not
    assert _out([ledger.BulkTransfer(project_id=beta.id, amount=999_999, idempotency_key="k2")]) == {"k2": moved.ids["k2"]}


def test_a_project_without_a_wallet_refuses_the_whole_batch():
    acme, ghost = ProjectFactory(slug="acme", balance="1"), ProjectFactory(slug="ghost")
    Account.objects.filter(project=ghost).delete()  # never funded: no transfer (append-only) points at it
    with pytest.raises(ValueError, match="without a wallet"):
        _out([ledger.BulkTransfer(project_id=acme.id, amount=100_000, idempotency_key="k1"),
              ledger.BulkTransfer(project_id=ghost.id, amount=100_000, idempotency_key="k2")])
    assert Account.objects.get(project=acme).balance == 1_000_000
    assert not Transfer.objects.filter(idempotency_key__in=["k1", "k2"]).exists()


# PostgreSQL only: it waits for the batch to block on a wallet row lock (pg_stat_activity); SQLite has
# no row locks (its writers queue on one database lock), so this interleaving cannot happen there.
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_key_written_concurrently_rolls_the_whole_batch_back():
    """The batch checks keys before it locks: a key another writer commits meanwhile must not move money twice."""
    acme, beta = ProjectFactory(slug="acme", balance="1"), ProjectFactory(slug="beta", balance="1")
    ledger.system_account_id("revenue")  # committed before the other writer starts
    written, release = threading.Event(), threading.Event()

    def other_writer():
        try:
            with transaction.atomic():
                ledger.transfer(project=acme.id, direction="out", system_code="revenue", amount=100_000,
                                kind=Transfer.Kind.USAGE, idempotency_key="k1")
                written.set()
                release.wait(10)
        finally:
            connection.close()

    thread = threading.Thread(target=other_writer)
    thread.start()
    assert written.wait(10)

    def release_once_the_batch_waits():
        # Commit the other writer only once the batch is blocked on acme's wallet row (after its key check).
        try:
            with connection.cursor() as cursor:
                for _ in range(200):
                    cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                   "AND query LIKE '%%UPDATE wallets_account AS w%%'")
                    if cursor.fetchone()[0]:
                        break
                    time.sleep(0.05)
        finally:
            release.set()
            connection.close()

    threading.Thread(target=release_once_the_batch_waits).start()
    try:
        with pytest.raises(IntegrityError):
            _out([ledger.BulkTransfer(project_id=acme.id, amount=100_000, idempotency_key="k1"),
                  ledger.BulkTransfer(project_id=beta.id, amount=100_000, idempotency_key="k2")])
    finally:
        release.set()
        thread.join()
    assert Account.objects.get(project=acme).balance == 900_000  # taken once, by the other writer
    assert Account.objects.get(project=beta).balance == 1_000_000
    assert not Transfer.objects.filter(idempotency_key="k2").exists()
    assert ledger_check().ok
