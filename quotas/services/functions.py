"""Reserve and commit in one round trip each, on PostgreSQL: PL/pgSQL functions called in autocommit.

Each function runs the statements reservations.py and settlement.py send one by one, in the same lock
order and from the same text (statements.py for the reservation and the quota, wallets.ledger.functions
for the wallet, the transfer and the draw, quotas.selectors.spend_sql for the budget). Each is its own
statement inside the function, so in READ COMMITTED each reads a snapshot taken after the locks before
it were granted: the draw, the quota check and the spend see what the last holder of the wallet lock
left.

A refusal (suspended, insufficient, quota, budget) raises an SQL error of SQLSTATE REFUSED, which rolls
the whole call back: nothing is written, and the caller builds the same answer the statement path
gives (reservations.py). A replayed Idempotency-Key and a commit of a reservation that is not pending
return a row that says so, having written nothing.

The text is (re)created by every `migrate` (quotas/apps.py) and each function is named by a hash of its
text, so the database never runs rules older than the code; until `migrate` has created them, and on
SQLite, the statement path runs instead (enabled()).
"""

from datetime import datetime
from functools import cache

from django.db import connection

from creditservice.lib.money import format_micros_sql
from wallets import ledger
from wallets.ledger import functions as ledger_functions
from wallets.ledger import grants
from wallets.ledger.functions import Refusal
from wallets.models import Account, Project, Transfer

from .. import selectors
from ..models import Budget
from . import statements

REFUSED = "QR402"  # SQLSTATE of a refusal; its message says which, its detail gives the figures
_BUDGET = Budget._meta.db_table

_RESERVE_ARGS = ("p_project_id bigint, p_status text, p_wallet_id bigint, p_slug text, p_scope_project_id bigint, "
                 "p_type_id bigint, p_quantity bigint, p_amount bigint, p_expires_at timestamptz, p_scope text, "
                 "p_key text, p_fingerprint text, p_actor text, p_now timestamptz, p_needle text, "
                 "p_month_start timestamptz, OUT o_outcome text, OUT o_id bigint")


def _refuse(code: str, detail: str | None = None) -> str:
    extra = f", DETAIL = {detail}" if detail else ""
    return f"RAISE EXCEPTION '{code}' USING ERRCODE = '{REFUSED}'{extra};\n"


def _reserve_body() -> str:
    insert = statements.insert_reservation_sql(
        project="v_project", type_id="p_type_id", quantity="p_quantity", amount="p_amount",
        expires_at="p_expires_at", scope="p_scope", key="p_key", fingerprint="p_fingerprint", actor="p_actor",
        now="p_now")
    hold = ledger_functions.hold_statement(wallet="v_wallet", amount="p_amount", until="p_expires_at", now="p_now",
                                           needle="p_needle", into="v_balance, v_reserved")
    quota = statements.hold_quota_sql(project="v_project", type_id="p_type_id", quantity="p_quantity", now="p_now")
    spend = selectors.spend_sql(wallet="v_wallet", month_start="p_month_start", project="v_project", now="p_now")
    columns, source = selectors.PROJECT_REF_BY_SLUG
    return (
        "DECLARE v_project bigint := p_project_id; v_status text := p_status; v_wallet bigint := p_wallet_id; "
        "v_slug text; v_hours integer; v_hard bigint; v_balance bigint; v_reserved bigint; v_limit bigint; v_used bigint; "
        "v_held bigint; v_charged bigint; v_pending bigint;\n"
        "BEGIN\n"
        # (0) A project named by its slug (a service key's call): the lookup project_ref() makes, and the
        # key's scope; a project the key may not use is as unknown as one that does not exist.
        "IF v_project IS NULL THEN\n"
        f"SELECT {columns} INTO v_project, v_slug, v_status, v_hours, v_wallet, v_hard FROM {source} "
        "WHERE p.slug = p_slug;\n"
        "IF v_project IS NULL OR v_project <> COALESCE(p_scope_project_id, v_project) THEN "
        "o_outcome := 'no_project'; RETURN; END IF;\n"
        "END IF;\n"
        # (1) The reservation row claims the key; no row: it was used before (the caller replays).
        f"{insert} INTO o_id;\n"
        "IF o_id IS NULL THEN o_outcome := 'replayed'; RETURN; END IF;\n"
        f"IF v_status <> '{Project.Status.ACTIVE.value}' THEN " + _refuse("suspended") + "END IF;\n"
        # (2) The wallet row: reserved += amount where available covers it.
        f"{hold}"
        "IF NOT FOUND THEN " + _refuse("insufficient") + "END IF;\n"
        # (3) The quota row.
        f"{quota} INTO v_limit, v_used, v_held;\n"
        "IF NOT FOUND THEN " + _refuse("quota") + "END IF;\n"
        "IF v_limit IS NOT NULL AND v_used + v_held > v_limit THEN "
        + _refuse("quota", "v_limit || ' ' || v_used") + "END IF;\n"
        # (4) The budget as it is now, its spend read under the wallet lock (this hold counted).
        f"SELECT b.hard_limit INTO v_hard FROM {_BUDGET} b WHERE b.project_id = v_project;\n"
        "IF v_hard IS NOT NULL THEN\n"
        f"{spend} INTO v_charged, v_pending;\n"
        "IF GREATEST(v_charged, 0) + v_pending > v_hard THEN "
        + _refuse("budget", "v_hard || ' ' || GREATEST(v_charged, 0) || ' ' || v_pending") + "END IF;\n"
        "END IF;\n"
        "o_outcome := 'created';\n"
        "END"
    )


_COMMIT_ARGS = ("p_reservation_id bigint, p_amount bigint, p_scope_project_id bigint, p_now timestamptz, "
                "p_actor text, p_revenue_id bigint, "
                "OUT o_project_id bigint, OUT o_type_id bigint, OUT o_quantity bigint, OUT o_held bigint, "
                "OUT o_take bigint, OUT o_expires_at timestamptz, OUT o_created_at timestamptz, OUT o_slug text, "
                "OUT o_wallet_id bigint, OUT o_code text, OUT o_balance bigint, OUT o_reserved bigint")


def _commit_body() -> str:
    pending = statements.commit_pending_sql(
        take="COALESCE(p_amount, amount)", now="p_now", reservation="p_reservation_id",
        conditions="AND (p_amount IS NULL OR amount >= p_amount) "
                   "AND (p_scope_project_id IS NULL OR project_id = p_scope_project_id) ")
    charge = ledger_functions.commit_hold_statements(
        project="o_project_id", wallet="o_wallet_id", revenue="p_revenue_id", held="o_held", amount="o_take",
        kind=f"'{Transfer.Kind.RESERVATION.value}'", reason=f"{format_micros_sql('o_quantity')} || ' ' || o_code",
        reference=statements.text_with(statements.COMMIT_REFERENCE, "p_reservation_id"),
        idempotency_key=statements.text_with(statements.COMMIT_KEY, "p_reservation_id"), actor="p_actor",
        now="p_now", needle=grants.scope_needle_sql("o_code"), balance="o_balance", reserved="o_reserved",
        transfer="v_transfer_id")
    release = ledger_functions.release_statement(wallet="o_wallet_id", amount="o_held", now="p_now", balance="o_balance",
                                          reserved="o_reserved")
    quota = statements.drop_quota_hold_sql(quantity="o_quantity", used="o_quantity", now="p_now",
                                           project="o_project_id", type_id="o_type_id")
    return (
        "DECLARE v_transfer_id bigint;\n"
        "BEGIN\n"
        # (1) The compare-and-set; no row: not pending, overdue, another project's or amount > held.
        f"{pending} INTO o_project_id, o_type_id, o_quantity, o_held, o_take, o_expires_at, o_created_at, o_slug, "
        "o_wallet_id, o_code;\n"
        "IF NOT FOUND THEN RETURN; END IF;\n"
        # (2) The wallet: the charge with its transfer and draw, or (nothing taken) the hold released.
        "IF o_take > 0 THEN\n"
        f"{charge}"
        "ELSIF o_held > 0 THEN\n"
        f"{release}"
        "END IF;\n"
        # (3) The quota: the hold becomes usage.
        f"{quota};\n"
        "END"
    )


@cache
def reserve_function() -> tuple[str, str]:
    """(name, CREATE statement) of the reserve function."""
    return ledger_functions.define("quotas_reserve_", _RESERVE_ARGS, _reserve_body())


@cache
def commit_function() -> tuple[str, str]:
    """(name, CREATE statement) of the commit function."""
    return ledger_functions.define("quotas_commit_", _COMMIT_ARGS, _commit_body())


def install_after_migrate(using: str = "default", **kwargs) -> None:
    ledger_functions.install(using, create=reserve_function()[1])
    ledger_functions.install(using, create=commit_function()[1])


def enabled() -> bool:
    return (connection.vendor == "postgresql" and ledger_functions.installed(reserve_function()[0])
            and ledger_functions.installed(commit_function()[0]))


def reserve(*, project: "selectors.ProjectRef | None", slug: str, scope_project_id: int | None, type_id: int,
            type_code: str, quantity: int, amount: int, expires_at: datetime, scope: str, key: str, fingerprint: str,
            actor: str, now: datetime) -> int | str | Refusal:
    """The new reservation's id; "replayed" when the key was used before; "no_project" when `project`
    is None (it is looked up by `slug` then) and there is no such project the caller may use; or the
    Refusal. Anything but an id wrote nothing."""
    ledger.require_holdable(amount)
    month_start, _ = selectors.month_bounds(now)
    known = [project.id, project.status, project.wallet_id] if project is not None else [None, None, None]
    row = ledger_functions.call(reserve_function()[0], [
        *known, slug, scope_project_id, type_id, quantity, amount, expires_at, scope, key, fingerprint, actor, now,
        grants.scope_needle(type_code), month_start,
    ], refused=REFUSED)
    if isinstance(row, Refusal):
        return row
    outcome, reservation_id = row
    return reservation_id if outcome == "created" else outcome


def commit(*, reservation_id: int, amount: int | None, project_id: int | None, actor: str,
           now: datetime) -> tuple | None:
    """The row of settlement._commit_pending() once committed (with the transfer, the draw and the
    quota), or None when the reservation was not committed now (nothing written)."""
    row = ledger_functions.call(commit_function()[0], [
        reservation_id, amount, project_id, now, actor, ledger.system_account_id(Account.System.REVENUE),
    ], refused=REFUSED)
    if row[0] is None:
        return None
    *committed, balance, reserved = row
    project_id_, held, take = committed[0], committed[3], committed[4]
    if held > 0:
        ledger.after_hold_ended(project_id=project_id_, state=ledger.WalletState(balance=balance, reserved=reserved),
                                given_back=held - take)
    return tuple(committed)
