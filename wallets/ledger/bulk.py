"""transfer_many: many transfers between project wallets and one system account, set-based.

For the billing batch: no require_funds (usage already happened, a wallet may go negative) and no
holds. Exactly once per idempotency key, like every other movement of the ledger.
"""

from typing import NamedTuple

from django.db import IntegrityError, connection, transaction

from creditservice.lib.pg_arrays import pg_array

from . import _TRANSFER, _WALLET, _now, _run_funded_hooks, system_account_id


class BulkTransfer(NamedTuple):
    """One transfer of transfer_many: `amount` micro-credits (> 0) for one project's wallet."""

    project_id: int
    amount: int
    idempotency_key: str
    reference: str = ""
    metadata_json: str = "{}"  # already serialized: the batch caller often shares one document


class BulkResult(NamedTuple):
    ids: dict[str, int]  # idempotency key → transfer id, for every key asked (new or already present)
    unfunded: list[int]  # direction "out": projects this batch moved whose available balance is now ≤ 0


def transfer_many(
    *, transfers: list[BulkTransfer], direction: str, system_code: str, kind: str, reason: str = "",
    actor: str = "system",
) -> BulkResult:
    """Keys already in the ledger are skipped (a re-run moves nothing twice); the rest changes each
    wallet once and writes one transfer per key, each with the wallet's balance after it. A key taken
    concurrently rolls the whole batch back (IntegrityError), so no balance moves without its transfer.
    Call inside the caller's transaction when other rows must commit with the transfers.
    """
    if direction not in ("in", "out"):
        raise ValueError("direction is 'in' or 'out'")
    if not transfers:
        return BulkResult({}, [])
    if any(t.amount <= 0 for t in transfers):
        raise ValueError("a transfer moves a positive amount")
    keys = [t.idempotency_key for t in transfers]
    if len(set(keys)) != len(keys):
        raise ValueError("idempotency keys repeat inside one batch")
    system_id = system_account_id(system_code)
    write = _write_pg if connection.vendor == "postgresql" else _write_portable
    with transaction.atomic():
        ids, moved = write(transfers=transfers, keys=keys, direction=direction, system_id=system_id, kind=kind,
                           reason=reason, actor=actor)
        if direction == "in":
            for project_id in moved:
                transaction.on_commit(lambda project_id=project_id: _run_funded_hooks(project_id))
    return BulkResult(ids, [] if direction == "in" else moved)


# One statement: skip the keys already written, change each wallet once (in wallet id order, as
# everywhere), insert the transfers with each one's balance after it (running sum in batch order;
# the window's sort also gives a project's transfers ascending ids in that order),
# and answer the keys' ids plus the wallets that crossed zero. No SELECT … FOR UPDATE: the UPDATE
# takes the row locks, and the ids travel back once instead of a round trip of balances per batch.
_PG_BATCH = f"""
WITH batch AS (
    SELECT * FROM unnest(%(projects)s::bigint[], %(amounts)s::bigint[], %(keys)s::text[], %(references)s::text[],
                         %(metadata)s::text[]) WITH ORDINALITY AS b(project_id, amount, idempotency_key, reference,
                                                                     metadata, n)
), existing AS (
    SELECT t.idempotency_key, t.id FROM batch b JOIN {_TRANSFER} t ON t.idempotency_key = b.idempotency_key
), todo AS (
    SELECT b.* FROM batch b WHERE NOT EXISTS (SELECT 1 FROM existing e WHERE e.idempotency_key = b.idempotency_key)
), moved AS (
    UPDATE {_WALLET} AS w SET balance = w.balance + v.delta, updated_at = CURRENT_TIMESTAMP
    FROM (SELECT a.id, d.delta
          FROM (SELECT project_id, (%(sign)s * sum(amount))::bigint AS delta FROM todo GROUP BY project_id) d
          JOIN {_WALLET} a ON a.project_id = d.project_id AND a.kind = 'wallet' ORDER BY a.id) AS v
    WHERE w.id = v.id
    RETURNING w.project_id, w.id, w.balance, w.reserved, v.delta
), created AS (
    INSERT INTO {_TRANSFER} (project_id, debit_account_id, credit_account_id, amount, kind, reason, reference,
                             idempotency_key, metadata, actor, wallet_balance_after, created_at)
    SELECT t.project_id, {{debit}}, {{credit}}, t.amount, %(kind)s, %(reason)s, t.reference, t.idempotency_key,
           t.metadata::jsonb, %(actor)s,
           (m.balance - m.delta + %(sign)s * sum(t.amount) OVER (PARTITION BY t.project_id ORDER BY t.n))::bigint,
           %(now)s
    FROM todo t JOIN moved m ON m.project_id = t.project_id
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING idempotency_key, id
)
SELECT idempotency_key, id FROM existing
UNION ALL SELECT idempotency_key, id FROM created
UNION ALL SELECT NULL, project_id FROM moved WHERE (balance - reserved > 0) = %(funded)s
"""
_PG_OUT = _PG_BATCH.format(debit="m.id", credit="%(system)s")
_PG_IN = _PG_BATCH.format(debit="%(system)s", credit="m.id")


def _write_pg(*, transfers, keys, direction, system_id, kind, reason, actor) -> tuple[dict[str, int], list[int]]:
    with connection.cursor() as cursor:
        # The driver's cursor, not Django's wrapper: with DEBUG on, the wrapper renders every
        # statement with its 100,000-element parameters for the query log.
        raw = cursor.cursor
        raw.execute(_PG_IN if direction == "in" else _PG_OUT, {
            "projects": pg_array([t.project_id for t in transfers], quote=False),
            "amounts": pg_array([t.amount for t in transfers], quote=False),
            "keys": pg_array(keys, quote=True),
            "references": pg_array([t.reference for t in transfers], quote=True),
            "metadata": pg_array([t.metadata_json for t in transfers], quote=True),
            "sign": 1 if direction == "in" else -1, "system": system_id, "kind": kind, "reason": reason,
            "actor": actor, "now": _now(), "funded": direction == "in",
        }, prepare=False)  # planned for each batch's arrays: a generic plan guesses their size
        rows = raw.fetchall()
    ids = {key: id_ for key, id_ in rows if key is not None}
    if len(ids) != len(keys):
        _raise_for_missing(transfers, ids)
    return ids, sorted(project_id for key, project_id in rows if key is None)


def _raise_for_missing(transfers: list[BulkTransfer], ids: dict[str, int]) -> None:
    """A transfer was not written: its project has no wallet, or someone wrote its key meanwhile
    (only a second billing worker on the same window could). The caller's transaction rolls back."""
    missing = sorted({t.project_id for t in transfers if t.idempotency_key not in ids})
    with connection.cursor() as cursor:
        cursor.cursor.execute(f"SELECT project_id FROM {_WALLET} WHERE project_id = ANY(%s::bigint[])",
                              [pg_array(missing, quote=False)])
        without_wallet = sorted(set(missing) - {row[0] for row in cursor.cursor.fetchall()})
    if without_wallet:
        raise ValueError(f"projects without a wallet: {without_wallet[:10]}")
    raise IntegrityError("a transfer key was taken concurrently; the batch was rolled back")


def _write_portable(*, transfers, keys, direction, system_id, kind, reason, actor) -> tuple[dict[str, int], list[int]]:
    """SQLite (one writer at a time): read, then write row by row."""
    project_ids = sorted({t.project_id for t in transfers})
    with connection.cursor() as cursor:
        wallets, existing = [], {}
        for start in range(0, len(project_ids), 500):
            part = project_ids[start:start + 500]
            cursor.execute(f"SELECT id, project_id, balance, reserved FROM {_WALLET} WHERE project_id IN "
                           f"({', '.join(['%s'] * len(part))}) ORDER BY id", part)
            wallets += cursor.fetchall()
        for start in range(0, len(keys), 500):
            part = keys[start:start + 500]
            cursor.execute(f"SELECT idempotency_key, id FROM {_TRANSFER} WHERE idempotency_key IN "
                           f"({', '.join(['%s'] * len(part))})", part)
            existing.update(dict(cursor.fetchall()))
        wallet_of = {row[1]: [row[0], row[2], row[3]] for row in wallets}  # project → [wallet id, balance, reserved]
        missing = [pid for pid in project_ids if pid not in wallet_of]
        if missing:
            raise ValueError(f"projects without a wallet: {missing[:10]}")
        sign = 1 if direction == "in" else -1
        now = connection.ops.adapt_datetimefield_value(_now())
        created: dict[str, int] = {}
        deltas: dict[int, int] = {}  # project → change
        for t in transfers:
            if t.idempotency_key in existing:
                continue
            wallet = wallet_of[t.project_id]
            wallet[1] += sign * t.amount
            deltas[t.project_id] = deltas.get(t.project_id, 0) + sign * t.amount
            debit, credit = (system_id, wallet[0]) if direction == "in" else (wallet[0], system_id)
            cursor.execute(
                f"INSERT INTO {_TRANSFER} (project_id, debit_account_id, credit_account_id, amount, reference, "
                "idempotency_key, metadata, wallet_balance_after, kind, reason, actor, created_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [t.project_id, debit, credit, t.amount, t.reference, t.idempotency_key, t.metadata_json, wallet[1],
                 kind, reason, actor, now])
            created[t.idempotency_key] = cursor.lastrowid
        cursor.executemany(f"UPDATE {_WALLET} SET balance = balance + %s, updated_at = CURRENT_TIMESTAMP WHERE id = %s",
                           [(deltas[p], wallet_of[p][0]) for p in sorted(deltas, key=lambda p: wallet_of[p][0])])
    funded = direction == "in"
    crossed = sorted(p for p in deltas if (wallet_of[p][1] - wallet_of[p][2] > 0) == funded)
    return {**existing, **created}, crossed
