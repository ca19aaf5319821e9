"""Billing run and usage ingestion benches (issue 5)."""

import subprocess
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import psycopg

from . import stack
from .admission import wrk_run

INGEST_LUA = Path(__file__).with_name("ingest.lua")
BILLING_RUN_TIMEOUT = 150  # seconds: a run slower than this is reported as such, not waited for
# Windows billed as deployed, each followed by a floor: the figures are the medians, so one run that
# shares the machine with something else does not decide the ratio.
DEPLOYED_RUNS = 3


class NotAvailable(Exception):
    """The code this section measures does not exist (yet): the section prints why and the rest runs."""


def _job(url: str, *args: str, timeout: float, **extra_env: str) -> dict:
    try:
        out = stack.run_json(url, "bench.billing_job", *args, timeout=timeout, **extra_env)
    except subprocess.TimeoutExpired:
        raise NotAvailable(f"`bench.billing_job {args[0]}` did not finish in {timeout:.0f} s")
    except RuntimeError as exc:
        raise NotAvailable(str(exc))
    if "not_available" in out:
        raise NotAvailable(out["not_available"])
    return out


def _usage_transfers(pg_url: str) -> int:
    with psycopg.connect(pg_url) as conn:
        return conn.execute("SELECT count(*) FROM wallets_transfer WHERE kind = 'usage'").fetchone()[0]


# The floor: what a billing run has to write at the least, as set-based statements in one transaction:
# the balances, the ledger rows, and (since credit grants) each usage debit's draw from its wallet's grants.
# Quantities are micro-units and prices pico-credits: micro-units × picos / 10^12 = micro-credits.
FLOOR_UPDATE = """
UPDATE wallets_account a SET balance = a.balance - c.amount, updated_at = CURRENT_TIMESTAMP
FROM (
    SELECT u.project_id, round(u.quantity::numeric * p.unit_price / 1000000000000)::bigint AS amount
    FROM metering_usagerecord u
    JOIN metering_price p ON p.resource_type_id = u.resource_type_id AND p.effective_from <= u.window_start
         AND (p.effective_to IS NULL OR p.effective_to > u.window_start)
    WHERE u.window_start = %(window)s
) c
WHERE a.project_id = c.project_id AND a.kind = 'wallet' AND c.amount > 0
"""
FLOOR_INSERT = """
INSERT INTO wallets_transfer (project_id, debit_account_id, credit_account_id, amount, kind, reason, reference,
                              idempotency_key, metadata, actor, wallet_balance_after, created_at)
SELECT u.project_id, a.id, %(revenue)s, round(u.quantity::numeric * p.unit_price / 1000000000000)::bigint, 'usage', '', 'floor',
       'floor-usage-' || u.id, '{}'::jsonb, 'floor', a.balance, CURRENT_TIMESTAMP
FROM metering_usagerecord u
JOIN metering_price p ON p.resource_type_id = u.resource_type_id AND p.effective_from <= u.window_start
     AND (p.effective_to IS NULL OR p.effective_to > u.window_start)
JOIN wallets_account a ON a.project_id = u.project_id AND a.kind = 'wallet'
WHERE u.window_start = %(window)s AND round(u.quantity::numeric * p.unit_price / 1000000000000) > 0
RETURNING id, debit_account_id, amount
"""
# The draw, by the ledger's rule (wallets.ledger.grants, plain order): each wallet's debits and its open grants
# laid end to end as running totals, each debit taking its overlap with each grant: one INSERT of the draws and
# one UPDATE of the grants' remaining, over the transfers FLOOR_INSERT returns (data-modifying CTEs).
FLOOR_DRAW = """
WITH moved AS ({insert}),
t AS (SELECT id AS transfer_id, debit_account_id AS wallet_id, amount,
             SUM(amount) OVER (PARTITION BY debit_account_id ORDER BY id) AS t_end FROM moved),
g AS (SELECT id, wallet_id, remaining,
             SUM(remaining) OVER (PARTITION BY wallet_id ORDER BY {order}) AS g_end
      FROM wallets_grant WHERE remaining > 0 AND wallet_id IN (SELECT wallet_id FROM t)),
d AS (SELECT t.transfer_id, g.id AS grant_id,
             LEAST(t.t_end, g.g_end) - GREATEST(t.t_end - t.amount, g.g_end - g.remaining) AS take
      FROM t JOIN g ON g.wallet_id = t.wallet_id AND g.g_end - g.remaining < t.t_end AND t.t_end - t.amount < g.g_end),
u AS (UPDATE wallets_grant SET remaining = wallets_grant.remaining - s.take
      FROM (SELECT grant_id, SUM(take) AS take FROM d GROUP BY grant_id) s WHERE wallets_grant.id = s.grant_id),
drawn AS (INSERT INTO wallets_grantdraw (transfer_id, grant_id, amount) SELECT transfer_id, grant_id, take FROM d
          RETURNING 1)
SELECT (SELECT count(*) FROM moved), (SELECT count(*) FROM drawn)
"""
# The draw order of wallets.ledger.grants.DRAW_ORDER_SQL, "now" being the transaction's start.
FLOOR_DRAW_ORDER = ("CASE WHEN effective_at > CURRENT_TIMESTAMP THEN 2 WHEN expires_at <= CURRENT_TIMESTAMP THEN 1 ELSE 0 END, "
                    "priority, expires_at IS NULL, expires_at, id")


def billing_floor(pg_url: str, *, window_start: str) -> tuple[float, int]:
    with psycopg.connect(pg_url) as conn:
        revenue = conn.execute("SELECT id FROM wallets_account WHERE code = 'revenue'").fetchone()
        if revenue is None:
            raise NotAvailable("no revenue account in the bench database")
        params = {"window": window_start, "revenue": revenue[0]}
        started = time.perf_counter()
        with conn.transaction():
            conn.execute(FLOOR_UPDATE, params)
            rows, _ = conn.execute(FLOOR_DRAW.format(insert=FLOOR_INSERT.strip(), order=FLOOR_DRAW_ORDER),
                                   params).fetchone()
        return time.perf_counter() - started, rows


def _settle(pg_url: str) -> None:
    """Every timed part starts alike: the wallets the previous part updated vacuumed, and no dirty pages
    or WAL left for a checkpoint to flush in the middle of the next one."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE wallets_account")
        conn.execute("CHECKPOINT")


def _timed_run(url: str, pg_url: str, command: str, window_start: str, expected: int, notes: list[str]) -> dict:
    _settle(pg_url)
    before = _usage_transfers(pg_url)
    extra = {"CELERY_BROKER_URL": stack.bench_broker_url()} if command == "run-deployed" else {}
    args = ["--timeout", str(BILLING_RUN_TIMEOUT)] if command == "run-deployed" else []
    ran = _job(url, command, "--window-start", window_start, *args, timeout=BILLING_RUN_TIMEOUT + 30, **extra)
    charges = _usage_transfers(pg_url) - before
    if charges != expected:
        notes.append(f"the run of {window_start} made {charges:,} usage charges for {expected:,} usage records "
                     f"({ran['result']})")
    return {**ran, "charges": charges}


def billing_bench(url: str, pg_url: str, *, projects: int, runs: int = DEPLOYED_RUNS) -> dict:
    """One window billed by one process, then `runs` windows billed as deployed, each followed by a floor."""
    seeded = _job(url, "seed", "--projects", str(projects), "--windows", str(runs + 1), timeout=900)
    windows, expected = seeded["windows"], seeded["usage_records"]
    notes: list[str] = []
    out = {"projects": expected, "seed_seconds": seeded["seconds"], "windows": windows, "notes": notes,
           "deployed": [], "floors": []}
    try:
        out["single"] = _timed_run(url, pg_url, "run", windows[0], expected, notes)
    except NotAvailable as exc:
        out["single_not_available"] = str(exc)
    try:
        worker = stack.CeleryWorker(url)
    except RuntimeError as exc:
        out["deployed_not_available"] = str(exc)
        worker = None
    try:
        if worker is not None:
            worker.wait_ready()
        for window_start in windows[1:]:
            if worker is not None and "deployed_not_available" not in out:
                try:
                    out["deployed"].append(_timed_run(url, pg_url, "run-deployed", window_start, expected, notes))
                except NotAvailable as exc:
                    out["deployed_not_available"] = str(exc)
            _settle(pg_url)
            out["floors"].append(billing_floor(pg_url, window_start=window_start))
    except RuntimeError as exc:
        out["deployed_not_available"] = str(exc)
    finally:
        if worker is not None:
            worker.stop()
    return out


def _probe_ingest(server_url: str, key: str) -> None:
    request = urllib.request.Request(
        f"{server_url}/api/v1/usage/events", data=b'{"events": []}', method="POST",
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10):
            return
    except urllib.error.HTTPError as exc:
        if exc.code in (404, 405):
            raise NotAvailable(f"POST /api/v1/usage/events answers {exc.code}")


def ingest_bench(server_url: str, *, key: str, slugs: list[str], seconds: float, clients: int,
                 batch: int = 1000) -> dict:
    _probe_ingest(server_url, key)
    env = {"BENCH_KEY": key, "BENCH_SLUGS": ",".join(slugs), "BENCH_BATCH": str(batch),
           "BENCH_RUN": uuid.uuid4().hex[:12]}
    result = wrk_run(server_url, script=INGEST_LUA, env=env, connections=clients, threads=1, seconds=seconds,
                     timeout_s=30)
    duration = result["duration_us"] / 1e6
    return {
        "batch": batch, "clients": clients, "seconds": duration, "batches": result["batches"],
        "events_per_s": result["accepted"] / duration if duration else 0.0,
        "accepted": result["accepted"], "duplicate": result["duplicate"], "rejected": result["rejected"],
        "p50_ms": result["p50_us"] / 1000, "p99_ms": result["p99_us"] / 1000,
        "errors": result["errors"], "samples": result["samples"],
        "socket_errors": {k: v for k, v in result["socket_errors"].items() if v},
    }
