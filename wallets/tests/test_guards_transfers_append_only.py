"""The database refuses any UPDATE or DELETE of a transfer, on both backends, whoever asks: the
ledger's services, a queryset or raw SQL. A correction is a reversing transfer."""

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction

from creditservice.testing.invariants import assert_books_balance
from wallets.append_only import MAINTENANCE_TABLE, MESSAGE
from wallets.models import IdempotencyRecord, Transfer
from wallets.tests.factories import ProjectFactory

pytestmark = pytest.mark.django_db


def _refused(sql: str, params: list) -> str:
    with pytest.raises(IntegrityError) as refused, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
    return str(refused.value)


def test_a_raw_update_of_a_transfer_is_refused():
    record = Transfer.objects.get(project=ProjectFactory(slug="acme", balance="10"))
    for sql in ("UPDATE wallets_transfer SET amount = amount + 1 WHERE id = %s",
                "UPDATE wallets_transfer SET reason = 'rewritten', created_at = created_at WHERE id = %s"):
        assert MESSAGE in _refused(sql, [record.id])
    assert Transfer.objects.get(id=record.id).amount == record.amount
    assert_books_balance()


def test_a_raw_delete_of_a_transfer_is_refused():
    record = Transfer.objects.get(project=ProjectFactory(slug="acme", balance="10"))
    assert MESSAGE in _refused("DELETE FROM wallets_transfer WHERE id = %s", [record.id])
    assert MESSAGE in _refused("DELETE FROM wallets_transfer", [])
    assert Transfer.objects.filter(id=record.id).exists()
    assert_books_balance()


def test_a_queryset_update_or_delete_of_transfers_is_refused():
    project = ProjectFactory(slug="acme", balance="10")
    with pytest.raises(IntegrityError, match=MESSAGE), transaction.atomic():
        Transfer.objects.filter(project=project).update(reason="rewritten")
    with pytest.raises(IntegrityError, match=MESSAGE), transaction.atomic():
        Transfer.objects.filter(project=project).delete()
    assert Transfer.objects.filter(project=project, reason="test funding").count() == 1


def test_statements_that_touch_no_transfer_and_other_tables_are_not_refused():
    ProjectFactory(slug="acme", balance="10")
    with connection.cursor() as cursor:
        cursor.execute("UPDATE wallets_transfer SET reason = 'x' WHERE id < 0")
        cursor.execute("DELETE FROM wallets_transfer WHERE id < 0")
    # Only transfers are append-only: the purge of idempotency records still deletes.
    IdempotencyRecord.objects.all().delete()


@pytest.mark.django_db(transaction=True)
def test_the_test_flush_empties_transfers_and_leaves_the_guard_closed():
    """Django's flush (the end of every transactional test) gets past the guard on its own transaction
    only (TRUNCATE on PostgreSQL; the maintenance escape on SQLite, closed again before it commits)."""
    ProjectFactory(slug="acme", balance="10")
    # As TransactionTestCase's teardown calls it: sequences left alone (serialized rollback restores
    # rows with their ids, and the tests after this one create more).
    call_command("flush", interactive=False, verbosity=0, reset_sequences=False, inhibit_post_migrate=True)
    assert not Transfer.objects.exists()
    assert sorted(_guard_triggers()) == (["wallets_transfer_append_only"] if connection.vendor == "postgresql"
                                         else ["wallets_transfer_no_delete", "wallets_transfer_no_update"])
    if connection.vendor == "sqlite":
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {MAINTENANCE_TABLE}")
            assert cursor.fetchone() == (0,)


def _guard_triggers() -> list[str]:
    """The enabled triggers on wallets_transfer."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = 'wallets_transfer'::regclass "
                           "AND NOT tgisinternal AND tgenabled <> 'D'")
        else:
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'wallets_transfer'")
        return [row[0] for row in cursor.fetchall()]
