"""SQLite -> PostgreSQL -> SQLite with the real commands, each database fresh and of its own (a SQLite file,
a PostgreSQL database created for the test and dropped after it): every row of every table survives."""

import json
import uuid
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from creditservice.ledger_io import tables
from creditservice.testing.ledger_io import SEED_COMMAND, manage, sqlite_rows

pytestmark = pytest.mark.postgres


@pytest.fixture
def postgres_url():
    """A new, empty PostgreSQL database on the test server, dropped afterwards."""
    params = connection.settings_dict
    name = f"cs_export_rt_{uuid.uuid4().hex[:12]}"
    server = {"host": params["HOST"] or "127.0.0.1", "port": params["PORT"] or 5432, "user": params["USER"],
              "password": params["PASSWORD"] or None, "dbname": "postgres", "autocommit": True}
    with psycopg.connect(**server) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    credentials = params["USER"] + (f":{params['PASSWORD']}" if params["PASSWORD"] else "")
    try:
        yield f"postgres://{credentials}@{server['host']}:{server['port']}/{name}"
    finally:
        with psycopg.connect(**server) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def export_of(url: str, path: Path) -> tuple[dict, list[str]]:
    manage(url, "export_ledger", str(path))
    header, *rows = path.read_text().splitlines()
    return json.loads(header), rows


def test_every_row_survives_sqlite_to_postgresql_to_sqlite(tmp_path, postgres_url):
    first, last = tmp_path / "first.sqlite3", tmp_path / "last.sqlite3"
    first_url, last_url = f"sqlite:///{first}", f"sqlite:///{last}"
    manage(first_url, "migrate", "--noinput", "-v", "0")
    manage(first_url, *SEED_COMMAND)
    from_sqlite, sqlite_rows_written = export_of(first_url, tmp_path / "from-sqlite.jsonl")

    manage(postgres_url, "migrate", "--noinput", "-v", "0")
    manage(postgres_url, "import_ledger", str(tmp_path / "from-sqlite.jsonl"))
    assert "ledger ok" in manage(postgres_url, "check_ledger", "--no-record").stdout
    from_postgres, postgres_rows_written = export_of(postgres_url, tmp_path / "from-postgres.jsonl")

    manage(last_url, "migrate", "--noinput", "-v", "0")
    manage(last_url, "import_ledger", str(tmp_path / "from-postgres.jsonl"))
    from_last, last_rows_written = export_of(last_url, tmp_path / "from-last.jsonl")

    assert (from_sqlite["source_backend"], from_postgres["source_backend"]) == ("sqlite", "postgresql")
    assert sqlite_rows_written == postgres_rows_written == last_rows_written
    assert from_sqlite["tables"] == from_postgres["tables"] == from_last["tables"]
    counts = {t["table"]: t["rows"] for t in from_sqlite["tables"]}
    for table in ("wallets_transfer", "quotas_reservation", "billing_charge", "payments_checkoutsession",
                  "payments_stripeevent", "metering_usagerecord", "auth_group_permissions"):
        assert counts[table] > 0, table
    # The two SQLite files hold the same rows, column by column, as the database stores them.
    for model in tables.included_models():
        assert sqlite_rows(first, model) == sqlite_rows(last, model), model._meta.db_table


def test_new_rows_on_postgresql_get_ids_past_the_imported_ones(tmp_path, postgres_url):
    source_url = f"sqlite:///{tmp_path / 'source.sqlite3'}"
    manage(source_url, "migrate", "--noinput", "-v", "0")
    manage(source_url, *SEED_COMMAND)
    manage(source_url, "export_ledger", str(tmp_path / "ledger.jsonl"))
    manage(postgres_url, "migrate", "--noinput", "-v", "0")
    manage(postgres_url, "import_ledger", str(tmp_path / "ledger.jsonl"))
    created = manage(postgres_url, "shell", "-c", (
        "from wallets import services; from wallets.models import Project, Transfer; "
        "top = max(Project.objects.values_list('id', flat=True)); "
        "p = services.project_create(slug='after-the-move', name='After'); "
        "t = services.wallet_credit(project=p, amount=1, reason='x', idempotency_key='after', actor='system'); "
        "print(p.id > top, t.id > max(Transfer.objects.exclude(id=t.id).values_list('id', flat=True)))"))
    assert created.stdout.split()[-2:] == ["True", "True"]
