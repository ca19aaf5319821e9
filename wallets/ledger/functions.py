"""PostgreSQL functions of the ledger, for callers that must move credits in one round trip (gateway
admission, reserve and commit).

charge_available() on PostgreSQL is one PL/pgSQL function: the wallet's conditional UPDATE, the
transfer INSERT and the draw from the grants, each its own statement inside the function. In READ
COMMITTED every statement of a volatile function takes a fresh snapshot, so the draw, which runs after
the UPDATE has locked the wallet row, sees the grants as the last holder of that lock left them (one
data-modifying CTE would read them from the snapshot taken before it waited for the lock, and
concurrent draws broke the grants' bounds: quotas/fastpath.py commit()).

The function's text is built here from the rules it runs (grants.unspendable_sql, grants.DRAW_ORDER_SQL
through grants.draw_statements_pg, the transfer's columns), so there is one implementation of each. It
is (re)created by every `migrate` (post_migrate, wallets/apps.py) and named by a hash of its text: code
and database can never disagree about the rules, and code newer than the database finds no function of
its name (and takes the statement-by-statement path) instead of running old rules.
"""

import hashlib
from contextlib import nullcontext
from dataclasses import dataclass
from functools import cache

from django.db import DatabaseError, connection, connections, transaction

from ..models import Account, Transfer
from . import grants

_WALLET = Account._meta.db_table
_TRANSFER = Transfer._meta.db_table
_PREFIX = "wallets_charge_available_"


def _transfer_insert(*, project: str, wallet: str, system: str, amount: str, kind: str, reason: str, reference: str,
                     idempotency_key: str, actor: str, balance_after: str, now: str, into: str) -> str:
    from . import _INSERT_TRANSFER_COLUMNS

    return (f"INSERT INTO {_TRANSFER} ({_INSERT_TRANSFER_COLUMNS}) VALUES ({project}, {wallet}, {system}, {amount}, "
            f"{kind}, {reason}, {reference}, {idempotency_key}, '{{}}'::jsonb, {actor}, {balance_after}, {now}) "
            f"RETURNING id INTO {into};\n")


def hold_statement(*, wallet: str, amount: str, until: str, now: str, needle: str, into: str) -> str:
    """PL/pgSQL: ledger.hold() for SQL expressions: reserved += amount where available (what grants
    expiring by `until` or scoped to other types than `needle`'s hold back not counted) covers it,
    balance and reserved after INTO `into`; no row (NOT FOUND) when refused. It locks the wallet row."""
    unspendable = grants.unspendable_sql(f"{_WALLET}.id", until, now, needle)
    return (f"UPDATE {_WALLET} SET reserved = {_WALLET}.reserved + {amount}, updated_at = {now} "
            f"WHERE {_WALLET}.id = {wallet} AND {_WALLET}.balance - {_WALLET}.reserved - {unspendable} >= {amount} "
            f"RETURNING {_WALLET}.balance, {_WALLET}.reserved INTO {into};\n")


def commit_hold_statements(*, project: str, wallet: str, revenue: str, held: str, amount: str, kind: str,
                           reason: str, reference: str, idempotency_key: str, actor: str, now: str, needle: str,
                           balance: str, reserved: str, transfer: str) -> str:
    """PL/pgSQL: ledger.commit_hold() for SQL expressions: the wallet's UPDATE (balance -= amount,
    reserved -= held; never refused), the transfer wallet -> revenue, and the draw from the grants
    (`needle`'s first), each its own statement under the wallet lock. The caller has made the commit
    exactly-once (its compare-and-set earlier in the function)."""
    return (
        f"UPDATE {_WALLET} SET balance = {_WALLET}.balance - {amount}, reserved = {_WALLET}.reserved - {held}, "
        f"updated_at = {now} WHERE {_WALLET}.id = {wallet} "
        f"RETURNING {_WALLET}.balance, {_WALLET}.reserved INTO {balance}, {reserved};\n"
        + _transfer_insert(project=project, wallet=wallet, system=revenue, amount=amount, kind=kind, reason=reason,
                           reference=reference, idempotency_key=idempotency_key, actor=actor, balance_after=balance,
                           now=now, into=transfer)
        + grants.draw_statements_pg(transfer=transfer, wallet=wallet, amount=amount, now=now, needle=needle)
    )


def release_statement(*, wallet: str, amount: str, now: str, balance: str, reserved: str) -> str:
    """PL/pgSQL: ledger.release() for SQL expressions: reserved -= amount (never refused)."""
    return (f"UPDATE {_WALLET} SET reserved = {_WALLET}.reserved - {amount}, updated_at = {now} "
            f"WHERE {_WALLET}.id = {wallet} RETURNING {_WALLET}.balance, {_WALLET}.reserved INTO {balance}, {reserved};\n")


def _charge_body() -> str:
    # p_needle: grants.scope_needle() of the charge's resource type, NULL for none (then no grant is
    # excluded for its scope: the test of a NULL needle is never true).
    unspendable = grants.unspendable_sql(f"{_WALLET}.id", "p_now", "p_now", "p_needle")
    draw = grants.draw_statements_pg(transfer="o_transfer_id", wallet="p_wallet_id", amount="p_amount", now="p_now",
                                     needle="p_needle")
    return (
        "BEGIN\n"
        # (1) The wallet row: locked by this UPDATE until the caller's transaction ends; no row when
        # available (what grants hold back not counted) does not cover the amount.
        f"UPDATE {_WALLET} SET balance = {_WALLET}.balance - p_amount, updated_at = p_now "
        f"WHERE {_WALLET}.id = p_wallet_id AND {_WALLET}.balance - {_WALLET}.reserved - {unspendable} >= p_amount "
        f"RETURNING {_WALLET}.balance, {_WALLET}.reserved INTO o_balance, o_reserved;\n"
        "IF NOT FOUND THEN RETURN; END IF;\n"
        # (2) The transfer, wallet -> revenue.
        + _transfer_insert(project="p_project_id", wallet="p_wallet_id", system="p_revenue_id", amount="p_amount",
                           kind="p_kind", reason="p_reason", reference="p_reference",
                           idempotency_key="p_idempotency_key", actor="p_actor", balance_after="o_balance",
                           now="p_now", into="o_transfer_id")
        +
        # (3) The draw: statements of their own, so their snapshots are taken under the wallet lock.
        f"{draw}"
        "END"
    )


_ARGS = ("p_project_id bigint, p_wallet_id bigint, p_revenue_id bigint, p_amount bigint, p_kind text, p_reason text, "
         "p_reference text, p_idempotency_key text, p_actor text, p_now timestamptz, p_needle text, "
         "OUT o_balance bigint, OUT o_reserved bigint, OUT o_transfer_id bigint")


@cache
def charge_function() -> tuple[str, str]:
    """(name, CREATE statement) of the charge function. Its arguments are charge_available()'s; it
    returns (balance, reserved, transfer id) after the charge, all NULL when refused (nothing written)."""
    return define(_PREFIX, _ARGS, _charge_body())


def define(prefix: str, args: str, body: str) -> tuple[str, str]:
    """(name, CREATE statement) of a PL/pgSQL function: named by `prefix` and a hash of its text, so a
    change of its rules is a new function that code of the same version calls (install())."""
    name = prefix + hashlib.sha256((args + body).encode()).hexdigest()[:12]
    return name, f"CREATE OR REPLACE FUNCTION {name}({args}) LANGUAGE plpgsql VOLATILE AS $fn$\n{body}\n$fn$"


_installed: set[str] = set()


def installed(name: str | None = None, using: str = "default") -> bool:
    """Whether the function `name` (default: the charge function) exists in the database: cached once
    seen, so it costs one query per process (and one per call only while `migrate` has not run yet)."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return False
    name = name or charge_function()[0]
    if name in _installed:
        return True
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace "
                       "WHERE n.nspname = current_schema() AND p.proname = %s", [name])
        if cursor.fetchone() is None:
            return False
    _installed.add(name)
    return True


def install(using: str = "default", create: str | None = None) -> None:
    """Create a function (default: the charge function) unless it exists. Older versions stay: a worker
    still running the code before a deploy goes on calling its own until it restarts."""
    if create is None:
        create = charge_function()[1]
    name = create.split("FUNCTION ", 1)[1].split("(", 1)[0]
    connection = connections[using]
    if connection.vendor == "postgresql" and not installed(name, using):
        with connection.cursor() as cursor:
            cursor.execute(create)


def install_after_migrate(using: str = "default", **kwargs) -> None:
    install(using)


@dataclass(frozen=True)
class Refusal:
    """A function's refusal: it raised an error of the caller's SQLSTATE, so it rolled back whole and
    wrote nothing. code: the error's message (which refusal); detail: its figures, if it gave any."""

    code: str
    detail: str | None


def call(name: str, params: list, *, refused: str) -> tuple | Refusal:
    """One call of the function `name`: its one row, or the Refusal it raised with SQLSTATE `refused`.

    In autocommit the call commits by itself; inside a caller's transaction a savepoint keeps a refusal
    from aborting it. Any other database error is raised (a deadlock victim is retried whole by
    creditservice.lib.retry, as for the statement-by-statement paths)."""
    try:
        with transaction.atomic() if connection.in_atomic_block else nullcontext():
            with connection.cursor() as cursor:
                cursor.execute(f"SELECT * FROM {name}({', '.join(['%s'] * len(params))})", params)
                return cursor.fetchone()
    except DatabaseError as exc:
        cause = exc.__cause__
        if getattr(cause, "sqlstate", None) != refused:
            raise
        return Refusal(code=cause.diag.message_primary, detail=cause.diag.message_detail)
