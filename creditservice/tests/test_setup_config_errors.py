"""A configuration mistake stops manage.py, gunicorn and Celery with one line that says what to set."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from django.conf import settings

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def run(*args: str, timeout: int = 60, **env: str) -> subprocess.CompletedProcess:
    """Run from the repository with an explicit configuration: the developer's .env cannot fill in
    what a variable set here (even to "") leaves out."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_URL", "CELERY_", "REDIS_URL"))}
    base.update(CREDITSERVICE_TESTING="0", DEBUG="1", SECRET_KEY="", DATABASE_URL="sqlite:////nonexistent-creditservice-dir/db.sqlite3")
    base.update(env)
    return subprocess.run(args, cwd=BASE_DIR, env=base, capture_output=True, text=True, timeout=timeout)


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    return run(sys.executable, "manage.py", *args, **env)


def the_one_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("creditservice:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_no_secret_key_outside_debug_is_one_line_naming_it():
    line = the_one_line(manage("check_ledger", DEBUG="0"))
    assert "SECRET_KEY is not set" in line
    assert "DEBUG=1" in line


def test_a_malformed_database_url_is_one_line_naming_it():
    line = the_one_line(manage("check_ledger", DATABASE_URL="postgres//localhost/creditservice"))
    assert "DATABASE_URL=" in line and "postgres://USER:PASSWORD@HOST:5432/NAME" in line


def test_a_bad_port_in_the_database_url_does_not_show_the_password():
    line = the_one_line(manage("check_ledger", DATABASE_URL="postgres://app:hunter2@db:port/creditservice"))
    assert "DATABASE_URL=" in line
    assert "hunter2" not in line


def test_an_unreachable_database_is_one_line_naming_it():
    # Port 1 on the loopback refuses at once: no server, no network.
    line = the_one_line(manage("migrate", DATABASE_URL="postgres://app:hunter2@127.0.0.1:1/creditservice"))
    assert "cannot open the database at DATABASE_URL=postgres://app:***@127.0.0.1:1/creditservice" in line
    assert "hunter2" not in line


def test_a_sqlite_file_in_a_missing_directory_is_one_line_naming_it(tmp_path):
    url = f"sqlite:///{tmp_path}/missing/db.sqlite3"
    line = the_one_line(manage("check_ledger", DATABASE_URL=url))
    assert f"DATABASE_URL={url}" in line and "directory must exist" in line


@pytest.mark.postgres
def test_a_database_that_does_not_exist_says_how_to_create_it():
    config = settings.DATABASES["default"]
    name = f"cs_missing_{uuid.uuid4().hex[:8]}"
    url = f"postgres://{config['USER']}:{config['PASSWORD']}@{config['HOST'] or '127.0.0.1'}:{config['PORT'] or 5432}/{name}"
    line = the_one_line(manage("migrate", DATABASE_URL=url))
    assert f'database "{name}" does not exist' in line
    assert f"createdb -h {config['HOST'] or '127.0.0.1'}" in line and line.rstrip().endswith("exists")


def test_an_error_on_an_open_database_keeps_its_traceback(tmp_path):
    # Only a database that cannot be opened is a configuration mistake; a failing query is a bug to see.
    code = (
        "from django.db import connection; from django.db.utils import OperationalError; "
        "connection.ensure_connection(); raise OperationalError('database is locked')"
    )
    result = manage("shell", "-c", code, DATABASE_URL=f"sqlite:///{tmp_path}/db.sqlite3")
    assert result.returncode == 1
    assert "Traceback" in result.stderr and "database is locked" in result.stderr


@pytest.mark.parametrize("hours", ["23", "-1", "10000000000000"])
def test_an_idempotency_key_ttl_under_a_day_or_absurd_is_one_line_naming_it(hours):
    line = the_one_line(manage("check", IDEMPOTENCY_KEY_TTL_HOURS=hours))
    assert "IDEMPOTENCY_KEY_TTL_HOURS must be at least 24" in line


@pytest.mark.parametrize("days", ["-1", "10000000000000"])
def test_a_gateway_charge_retention_out_of_bounds_is_one_line_naming_it(days):
    line = the_one_line(manage("check", GATEWAY_CHARGE_RETENTION_DAYS=days))
    assert "GATEWAY_CHARGE_RETENTION_DAYS must be 0 (keep) or a number of days" in line


def test_the_celery_worker_without_a_secret_key_is_one_line():
    line = the_one_line(run(sys.executable, "-m", "celery", "-A", "creditservice", "worker", "--pool=solo", DEBUG="0"))
    assert "SECRET_KEY is not set" in line


def test_celery_beat_on_an_unreachable_database_is_one_line():
    result = run(sys.executable, "-m", "celery", "-A", "creditservice", "beat",
                 DATABASE_URL="postgres://app@127.0.0.1:1/creditservice")
    assert "cannot open the database at DATABASE_URL=postgres://app@127.0.0.1:1/creditservice" in the_one_line(result)


def test_gunicorn_without_a_secret_key_is_one_line():
    gunicorn = Path(sys.executable).with_name("gunicorn")
    result = run(str(gunicorn), "creditservice.wsgi:application", "-c", "scripts/gunicorn.conf.py", DEBUG="0", PORT="0")
    assert "SECRET_KEY is not set" in the_one_line(result)
