"""The Django side of the billing bench, run by bench.billing in a subprocess for the bench database.

`python -m bench.billing_job seed --projects N --windows K`: N projects with a wallet (100 credits,
credited by a ledger row and its grant like any credit) and one usage record each in each of the last K closed
windows, by set-based INSERT … SELECT. Each window's records are dated a few minutes after it closed,
when a collector would have written them, so a run does not take an earlier window's records for
late usage.
`python -m bench.billing_job run --window-start ISO`: one billing_run_execute in this process (one worker).
`python -m bench.billing_job run-deployed --window-start ISO`: the window's run as deployed: the Celery
task staff start from the admin, on the bench's Celery worker (its parallel helpers included), timed
from sending the task until the run has finished.
Each prints one JSON line; {"not_available": reason} when the code it needs is missing.
"""

import argparse
import json
import time
from datetime import datetime

import django

SEED_CREDITS_MICROS = 100_000_000  # 100 credits per project: usage charges come out of it
USAGE_QUANTITY = "1000000"  # 1 vm-hour in the window, in micro-units


def _required_columns(cursor, table: str) -> set[str]:
    cursor.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = %s AND is_nullable = 'NO' "
        "AND column_default IS NULL AND is_identity = 'NO'", [table])
    return {row[0] for row in cursor.fetchall()}


def _insert_select(cursor, table: str, columns: dict[str, str], source: str, params: list) -> int:
    """INSERT INTO table (columns) SELECT <expressions> <source>; refuses when the table grew a required column."""
    missing = _required_columns(cursor, table) - set(columns) - {"id"}
    if missing:
        raise LookupError(f"{table} has required columns the bench does not fill: {sorted(missing)}")
    cursor.execute(f"INSERT INTO {table} ({', '.join(columns)}) SELECT {', '.join(columns.values())} {source}", params)
    return cursor.rowcount


COLLECTED_AFTER_CLOSE = "5 minutes"


def seed(projects: int, windows: int) -> dict:
    from django.db import connection, transaction

    from metering.windows import last_closed_window, window_length
    from quotas.models import ResourceType
    from wallets import ledger
    from wallets.models import Account

    last_start, _ = last_closed_window()
    starts = [last_start - window_length() * back for back in range(windows - 1, -1, -1)]
    vm = ResourceType.objects.get(code="vm").id
    adjustments = ledger.system_account_id(Account.System.ADJUSTMENTS)
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        _insert_select(cursor, "wallets_project", {
            "slug": "'bill-' || lpad(g::text, 6, '0')", "name": "'Billing ' || g", "status": "'active'",
            "suspended_by_staff": "false", "suspension_reason": "''", "created_at": "CURRENT_TIMESTAMP"}, "FROM generate_series(1, %s) g", [projects])
        _insert_select(cursor, "wallets_account", {
            "kind": "'wallet'", "project_id": "p.id", "balance": str(SEED_CREDITS_MICROS), "reserved": "0",
            "updated_at": "CURRENT_TIMESTAMP"}, "FROM wallets_project p WHERE p.slug LIKE 'bill-%%'", [])
        _insert_select(cursor, "wallets_transfer", {
            "project_id": "a.project_id", "debit_account_id": "%s", "credit_account_id": "a.id",
            "amount": str(SEED_CREDITS_MICROS), "kind": "'credit'", "reason": "'bench seed'", "reference": "''",
            "idempotency_key": "'bench-seed-' || a.id", "metadata": "'{}'::jsonb", "actor": "'system'",
            "wallet_balance_after": str(SEED_CREDITS_MICROS), "created_at": "CURRENT_TIMESTAMP"},
            "FROM wallets_account a JOIN wallets_project p ON p.id = a.project_id WHERE p.slug LIKE 'bill-%%'",
            [adjustments])
        # The grant each of those credits makes through the ledger (wallets.ledger.grants.credit): usage
        # charges draw from it, as they would from a real top-up's.
        _insert_select(cursor, "wallets_grant", {
            "category": "'granted'", "amount": "t.amount", "remaining": "t.amount", "priority": "20",
            "resource_types": "'[]'::jsonb", "applies_to": "''", "reason": "t.reason", "actor": "t.actor",
            "created_at": "t.created_at", "closed_as": "''", "close_reason": "''", "closed_by": "''",
            "source_transfer_id": "t.id", "wallet_id": "t.credit_account_id"},
            "FROM wallets_transfer t JOIN wallets_project p ON p.id = t.project_id "
            "WHERE p.slug LIKE 'bill-%%' AND t.idempotency_key LIKE 'bench-seed-%%'", [])
        for start in starts:
            collected = f"LEAST(%s::timestamptz + interval '{COLLECTED_AFTER_CLOSE}', CURRENT_TIMESTAMP)"
            usage = _insert_select(cursor, "metering_usagerecord", {
                "project_id": "p.id", "resource_type_id": "%s", "window_start": "%s", "window_end": "%s",
                "quantity": USAGE_QUANTITY, "source": "'prometheus'", "source_reference": "'bench'",
                "created_at": collected, "updated_at": collected},
                "FROM wallets_project p WHERE p.slug LIKE 'bill-%%'",
                [vm, start, start + window_length(), start + window_length(), start + window_length()])
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    return {"windows": [start.isoformat() for start in starts], "usage_records": usage, "vm_type": vm,
            "seconds": time.perf_counter() - started}


def run(window_start: datetime) -> dict:
    try:
        from billing.services import billing_run_execute
    except ImportError as exc:
        return {"not_available": f"billing.services.billing_run_execute cannot be imported ({exc})"}
    started = time.perf_counter()
    result = billing_run_execute(window_start=window_start)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "result": repr(result)[:300]}


def run_deployed(window_start: datetime, timeout: float) -> dict:
    """Send the admin's task for the window to the Celery worker, wait until its run has finished."""
    from billing.models import BillingRun
    from billing.tasks import billing_run_window

    started = time.perf_counter()
    billing_run_window.delay(window_start.isoformat(), trigger="bench")
    while time.perf_counter() - started < timeout:
        run = BillingRun.objects.filter(window_start=window_start).first()
        if run is not None and run.finished_at is not None and run.status != BillingRun.Status.RUNNING:
            seconds = time.perf_counter() - started
            workers = run.chunks.filter(attempt=run.attempt).values("worker").distinct().count()
            return {"seconds": seconds, "result": f"{run.status}: {run.charges_created} charges", "workers": workers}
        time.sleep(0.02)
    return {"not_available": f"the deployed run of {window_start.isoformat()} did not finish in {timeout:.0f} s "
                             "(is the bench's Celery worker running?)"}


def main() -> None:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command", required=True)
    seed_parser = sub.add_parser("seed")
    seed_parser.add_argument("--projects", type=int, required=True)
    seed_parser.add_argument("--windows", type=int, default=1)
    run_parser = sub.add_parser("run")
    run_parser.add_argument("--window-start", required=True)
    deployed_parser = sub.add_parser("run-deployed")
    deployed_parser.add_argument("--window-start", required=True)
    deployed_parser.add_argument("--timeout", type=float, default=150)
    args = parser.parse_args()
    django.setup()
    try:
        if args.command == "seed":
            out = seed(args.projects, args.windows)
        elif args.command == "run":
            out = run(datetime.fromisoformat(args.window_start))
        else:
            out = run_deployed(datetime.fromisoformat(args.window_start), args.timeout)
    except (LookupError, ImportError) as exc:
        out = {"not_available": str(exc)}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
