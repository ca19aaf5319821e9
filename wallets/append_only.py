"""The database's own guard of the ledger: a transfer is never updated or deleted, whoever asks.

Installed by migration 0008 (RunPython install/uninstall). Any later migration that rebuilds
wallets_transfer on SQLite (most AlterField and AddConstraint operations copy the table to a new one
and drop the old, and the triggers go with it) must run install() again after its operations. Plain
SQL only, no model: a migration may import it without depending on the models of its day.

Both backends raise an integrity error (PostgreSQL SQLSTATE 23001 restrict_violation, SQLite
SQLITE_CONSTRAINT: Django's IntegrityError on both) whose message starts with MESSAGE.

Maintenance, by design outside the application's connections:
- PostgreSQL: row triggers do not fire on TRUNCATE, which the test suite's flush uses (and which needs
  the TRUNCATE privilege, not granted by accident); a table owner may `ALTER TABLE wallets_transfer
  DISABLE TRIGGER wallets_transfer_append_only` for a documented repair and enable it again.
- SQLite has no TRUNCATE and no way to disable a trigger, and Django's flush (the end of every
  transactional test) is `DELETE FROM`. Its triggers stand aside only while wallets_ledger_maintenance
  has a row. A trigger in the main database cannot read a connection's TEMP table, so the escape is a
  plain table that nothing but the maintenance writes: it inserts its row, works and deletes the row
  in one transaction, so no other connection ever sees the row (SQLite shows a connection only what
  others committed) and the guard stays closed for every other connection all the while.
  creditservice/testing/flush.py does this for the test suite's flush only. The table is no model,
  so Django's flush never touches it.
"""

MESSAGE = "wallets_transfer is append-only"
MAINTENANCE_TABLE = "wallets_ledger_maintenance"

_POSTGRESQL_INSTALL = [
    f"""
    CREATE OR REPLACE FUNCTION wallets_transfer_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION '{MESSAGE}: % of transfer % refused (a correction is a reversing transfer)', TG_OP, OLD.id
            USING ERRCODE = 'restrict_violation';
    END
    $$
    """,
    "DROP TRIGGER IF EXISTS wallets_transfer_append_only ON wallets_transfer",
    # Per row, not per statement: an UPDATE or DELETE that matches no transfer changes nothing and is
    # not refused; one that matches any is refused whole (the statement is rolled back).
    "CREATE TRIGGER wallets_transfer_append_only BEFORE UPDATE OR DELETE ON wallets_transfer "
    "FOR EACH ROW EXECUTE FUNCTION wallets_transfer_append_only()",
]
_POSTGRESQL_UNINSTALL = [
    "DROP TRIGGER IF EXISTS wallets_transfer_append_only ON wallets_transfer",
    "DROP FUNCTION IF EXISTS wallets_transfer_append_only()",
]

_SQLITE_INSTALL = [
    f"CREATE TABLE IF NOT EXISTS {MAINTENANCE_TABLE} (reason TEXT NOT NULL CHECK (length(reason) > 0))",
    *(
        f"CREATE TRIGGER IF NOT EXISTS wallets_transfer_no_{op.lower()} BEFORE {op} ON wallets_transfer "
        f"WHEN NOT EXISTS (SELECT 1 FROM {MAINTENANCE_TABLE}) "
        f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}: {op} of a transfer refused (a correction is a reversing transfer)'); END"
        for op in ("UPDATE", "DELETE")
    ),
]
_SQLITE_UNINSTALL = [
    "DROP TRIGGER IF EXISTS wallets_transfer_no_update",
    "DROP TRIGGER IF EXISTS wallets_transfer_no_delete",
    f"DROP TABLE IF EXISTS {MAINTENANCE_TABLE}",
]

_BY_VENDOR = {
    "postgresql": (_POSTGRESQL_INSTALL, _POSTGRESQL_UNINSTALL),
    "sqlite": (_SQLITE_INSTALL, _SQLITE_UNINSTALL),
}


def _statements(vendor: str, index: int) -> list[str]:
    if vendor not in _BY_VENDOR:
        raise NotImplementedError(f"no append-only guard of transfers written for {vendor}")
    return _BY_VENDOR[vendor][index]


def install(apps, schema_editor) -> None:
    """RunPython forward: (re)install the guard; safe to run again."""
    for sql in _statements(schema_editor.connection.vendor, 0):
        schema_editor.execute(sql, params=None)


def uninstall(apps, schema_editor) -> None:
    for sql in _statements(schema_editor.connection.vendor, 1):
        schema_editor.execute(sql, params=None)
