"""The raw SQL floor of admission: 16 psycopg client processes, no web layer, on the app's real tables.

Per pair: (1) one transaction: conditional UPDATE of the wallet (reserved += amount where
balance - reserved >= amount) + INSERT of the reservation (quotas_reservation); (2) one transaction:
UPDATE of the reservation's status + UPDATE of the wallet (reserved -= amount, balance -= amount) +
INSERT of one ledger row (wallets_transfer). Processes, so the client side is not held by the GIL.
"""

import multiprocessing as mp
import os
import time
from array import array

import psycopg

from .proc_cpu import CpuMeter

RESERVE = (
    "UPDATE wallets_account SET reserved = reserved + %s, updated_at = CURRENT_TIMESTAMP "
    "WHERE id = %s AND balance - reserved >= %s"
)
INSERT_RESERVATION = (
    "INSERT INTO quotas_reservation (project_id, resource_type_id, quantity, amount, status, expires_at, "
    "idempotency_scope, idempotency_key, request_fingerprint, actor, created_at) "
    # Quantity 1 vm: 1,000,000 micro-units.
    "VALUES (%s, %s, 1000000, %s, 'pending', CURRENT_TIMESTAMP + interval '5 minutes', 'floor', %s, '', 'floor', "
    "CURRENT_TIMESTAMP) RETURNING id"
)
COMMIT_RESERVATION = (
    "UPDATE quotas_reservation SET status = 'committed', committed_amount = %s, ended_at = CURRENT_TIMESTAMP "
    "WHERE id = %s AND status = 'pending'"
)
COMMIT_WALLET = (
    "UPDATE wallets_account SET reserved = reserved - %s, balance = balance - %s, updated_at = CURRENT_TIMESTAMP "
    "WHERE id = %s RETURNING balance"
)
INSERT_TRANSFER = (
    "INSERT INTO wallets_transfer (project_id, debit_account_id, credit_account_id, amount, kind, reason, "
    "reference, idempotency_key, metadata, actor, wallet_balance_after, created_at) "
    "VALUES (%s, %s, %s, %s, 'reservation', '', %s, %s, '{}', 'floor', %s, CURRENT_TIMESTAMP)"
)


def _client(*args) -> None:
    try:
        _client_loop(*args)
    except KeyboardInterrupt:  # Ctrl-C reaches every process of the group; the parent cleans up
        pass


def _client_loop(url: str, wallets: list[list[int]], revenue: int, vm_type: int, amount: int, tag: str,
                 start_at: float, seconds: float, out: "mp.Queue", release: "mp.Event") -> None:
    latencies = array("d")
    pairs = refused = failed = 0
    pid = os.getpid()
    with psycopg.connect(url, prepare_threshold=0) as conn:
        cur = conn.cursor()
        time.sleep(max(0.0, start_at - time.time()))
        cpu_start = time.process_time()
        end = start_at + seconds
        n = 0
        while time.time() < end:
            n += 1
            wallet_id, project_id = wallets[(n * 7 + pid) % len(wallets)]
            key = f"{tag}-{pid}-{n}"
            try:
                t0 = time.perf_counter()
                with conn.transaction():
                    cur.execute(RESERVE, (amount, wallet_id, amount))
                    if cur.rowcount != 1:
                        refused += 1
                        continue
                    cur.execute(INSERT_RESERVATION, (project_id, vm_type, amount, key))
                    reservation_id = cur.fetchone()[0]
                t1 = time.perf_counter()
                with conn.transaction():
                    cur.execute(COMMIT_RESERVATION, (amount, reservation_id))
                    cur.execute(COMMIT_WALLET, (amount, amount, wallet_id))
                    balance = cur.fetchone()[0]
                    cur.execute(INSERT_TRANSFER, (project_id, wallet_id, revenue, amount, f"reservation:{reservation_id}",
                                                  key, balance))
                t2 = time.perf_counter()
            except psycopg.Error:
                failed += 1
                continue
            pairs += 1
            latencies.append(t1 - t0)
            latencies.append(t2 - t1)
        out.put((pairs, refused, failed, time.process_time() - cpu_start, latencies.tobytes()))
        # The connection stays open until the parent has sampled the backends' CPU: a backend that
        # ended before the sample would take its CPU time with it.
        release.wait(timeout=120)


def floor_run(url: str, *, wallets: list[list[int]], revenue: int, vm_type: int, amount: int,
              clients: int, seconds: float, tag: str) -> dict:
    """pairs/s and per-transaction latency of `clients` processes for `seconds`, and the CPU they and
    their backends spent ("cpu": the clients' own process time as the app's share)."""
    ctx = mp.get_context("fork")
    out, release = ctx.Queue(), ctx.Event()
    start_at = time.time() + 1.5  # every client connected before the clock starts
    procs = [ctx.Process(target=_client, args=(url, wallets, revenue, vm_type, amount, tag, start_at, seconds, out,
                                               release))
             for _ in range(clients)]
    for proc in procs:
        proc.start()
    meter = CpuMeter(url)
    try:
        time.sleep(max(0.0, start_at - time.time() - 0.05))
        meter.start()
        results = [out.get(timeout=seconds + 60) for _ in procs]
        cpu = meter.stop(client_cpu_s=sum(r[3] for r in results))
    finally:
        release.set()
    for proc in procs:
        proc.join()
    latencies = array("d")
    for *_, raw in results:
        latencies.frombytes(raw)
    ordered = sorted(latencies)
    return {
        "pairs": sum(r[0] for r in results),
        "refused": sum(r[1] for r in results),
        "failed": sum(r[2] for r in results),
        "seconds": seconds,
        "cpu": cpu,
        "p50_ms": percentile(ordered, 50) * 1000,
        "p99_ms": percentile(ordered, 99) * 1000,
    }


def percentile(ordered: list[float], pct: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(len(ordered) * pct / 100))]
