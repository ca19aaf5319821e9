"""The test suite's flush on SQLite, past the append-only guard of transfers.

A transactional test ends with Django's flush, which on SQLite is `DELETE FROM` every table: the
trigger that keeps transfers append-only (wallets/append_only.py) would refuse it. The flush
runs all its statements in one transaction on its own connection; this opens the guard's maintenance
escape as that transaction's first statement and closes it as its last, so no other connection ever
sees it open and the guard stays real for every test and every thread. PostgreSQL needs nothing:
its flush is TRUNCATE, which fires no row trigger.
"""

from django.db.backends.sqlite3.base import DatabaseWrapper

from wallets.append_only import MAINTENANCE_TABLE

_OPEN = f"INSERT INTO {MAINTENANCE_TABLE} (reason) VALUES ('test suite flush')"
_CLOSE = f"DELETE FROM {MAINTENANCE_TABLE}"


def let_test_flush_past_transfer_guard() -> None:
    """Wrap SQLite's execute_sql_flush once per process (the root conftest calls it at start-up)."""
    operations = DatabaseWrapper.ops_class
    flush = operations.execute_sql_flush
    if getattr(flush, "opens_transfer_guard", False):
        return

    def execute_sql_flush(self, sql_list):
        flush(self, [_OPEN, *sql_list, _CLOSE] if sql_list else sql_list)

    execute_sql_flush.opens_transfer_guard = True
    operations.execute_sql_flush = execute_sql_flush
