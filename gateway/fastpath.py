"""Charging one gateway call in one round trip, on PostgreSQL: a PL/pgSQL function called in autocommit.

The function does what services._charge_once() does statement by statement, in the same lock order:
(1) the INSERT that claims (project, request id) (a concurrent authorize of the same request waits
there, holding nothing else), (2) the ledger's charge function (wallets/ledger/functions.py: the
wallet's conditional UPDATE, the transfer, the draw from the grants), (3) with a budget, the month's
spend read under that wallet lock. Each is its own statement, so each reads a snapshot taken after the
locks before it were granted (READ COMMITTED): the draw and the spend see what the last holder of the
wallet lock left.

Outcomes that wrote nothing are returned: allowed, replayed (the request id was charged before),
reused (charged before for another call), suspended (no claim is made). A refusal after the claim
(insufficient, budget) raises an SQL error that rolls the whole call back, so refusals write nothing
and no transfer is ever inserted that would have to be undone.

Which rule lives where: the claim and the outcome codes here; the debit, transfer and draw in
wallets/ledger (functions.py, built from grants.py); the spend in quotas.selectors.spend_sql and its
comparison with the hard limit in quotas.services.budget_exceeded (repeated here as one SQL
condition); the refusal answers in services.py. The function's text is built from those modules, (re)
created by every `migrate` (gateway/apps.py) and named by a hash of its text, so it cannot run rules
older than the code; until it exists, services.py takes the statement-by-statement path.
"""

from dataclasses import dataclass
from datetime import datetime
from functools import cache

from django.db import connection

from quotas import selectors as quota_selectors
from wallets import ledger
from wallets.ledger import functions, grants
from wallets.models import Account, Transfer

from .models import GatewayCharge

_CHARGE = GatewayCharge._meta.db_table
# SQLSTATE of a refusal raised after the claim (the call rolls back); its message says which.
REFUSED = "GW402"
_PREFIX = "gateway_authorize_charge_"
_ARGS = ("p_project_id bigint, p_request_id text, p_route_id bigint, p_amount bigint, p_fingerprint text, "
         "p_suspended boolean, p_budget_limit bigint, p_month_start timestamptz, p_wallet_id bigint, "
         "p_revenue_id bigint, p_kind text, p_reason text, p_actor text, p_now timestamptz, p_needle text, "
         "OUT o_outcome text, OUT o_balance bigint, OUT o_reserved bigint, OUT o_charge_id bigint")


def _body() -> str:
    charge = functions.charge_function()[0]
    spend = quota_selectors.spend_sql(wallet="p_wallet_id", month_start="p_month_start", project="p_project_id",
                                      now="p_now")
    return (
        "DECLARE v_fingerprint text; v_transfer_id bigint; v_charged bigint; v_pending bigint;\n"
        "BEGIN\n"
        # (1) The claim; a suspended project claims nothing (it may still replay a charged request).
        "IF NOT p_suspended THEN\n"
        f"INSERT INTO {_CHARGE} (project_id, request_id, route_id, amount, fingerprint, created_at) "
        "VALUES (p_project_id, p_request_id, p_route_id, p_amount, p_fingerprint, p_now) "
        "ON CONFLICT (project_id, request_id) DO NOTHING RETURNING id INTO o_charge_id;\n"
        "END IF;\n"
        "IF o_charge_id IS NULL THEN\n"
        f"SELECT c.fingerprint INTO v_fingerprint FROM {_CHARGE} c "
        "WHERE c.project_id = p_project_id AND c.request_id = p_request_id;\n"
        "o_outcome := CASE WHEN v_fingerprint = p_fingerprint THEN 'replayed' "
        "WHEN v_fingerprint IS NULL THEN 'suspended' ELSE 'reused' END;\n"
        "RETURN;\n"
        "END IF;\n"
        # (2) The wallet, the transfer and the draw (the ledger's function).
        f"SELECT c.o_balance, c.o_reserved, c.o_transfer_id INTO o_balance, o_reserved, v_transfer_id FROM {charge}("
        "p_project_id, p_wallet_id, p_revenue_id, p_amount, p_kind, p_reason, 'gateway:' || o_charge_id, "
        "'v1:gateway:' || o_charge_id, p_actor, p_now, p_needle) c;\n"
        f"IF v_transfer_id IS NULL THEN RAISE EXCEPTION 'insufficient' USING ERRCODE = '{REFUSED}'; END IF;\n"
        # (3) The budget: this month's spend, counting the charge above, read under the wallet lock.
        "IF p_budget_limit IS NOT NULL THEN\n"
        f"{spend} INTO v_charged, v_pending;\n"
        "IF GREATEST(v_charged, 0) + v_pending > p_budget_limit THEN\n"
        f"RAISE EXCEPTION 'budget' USING ERRCODE = '{REFUSED}', DETAIL = GREATEST(v_charged, 0) || ' ' || v_pending;\n"
        "END IF;\n"
        "END IF;\n"
        "o_outcome := 'allowed';\n"
        "END"
    )


@cache
def authorize_function() -> tuple[str, str]:
    """(name, CREATE statement) of the function."""
    return functions.define(_PREFIX, _ARGS, _body())


def install_after_migrate(using: str = "default", **kwargs) -> None:
    functions.install(using)  # the ledger's function it calls
    functions.install(using, create=authorize_function()[1])


def enabled() -> bool:
    return connection.vendor == "postgresql" and functions.installed(authorize_function()[0])


@dataclass(frozen=True)
class Outcome:
    code: str  # allowed, replayed, reused, suspended, insufficient, budget
    balance: int | None = None  # allowed: the wallet after the charge (micro-credits)
    reserved: int | None = None
    charge_id: int | None = None
    spend: tuple[int, int] | None = None  # budget: (charged, pending) counting this call's price


def authorize(*, project: "quota_selectors.ProjectRef", route_id: int, price: int, resource_type: str, request_id: str,
              fingerprint: str, suspended: bool, reason: str, actor: str, now: datetime) -> Outcome:
    """One call of the function (functions.call: in autocommit it commits by itself)."""
    start, _ = quota_selectors.month_bounds(now)
    params = [project.id, request_id, route_id, price, fingerprint, suspended, project.budget_limit, start,
              project.wallet_id, ledger.system_account_id(Account.System.REVENUE), Transfer.Kind.USAGE.value, reason,
              actor, now, grants.scope_needle(resource_type)]
    row = functions.call(authorize_function()[0], params, refused=REFUSED)
    if isinstance(row, functions.Refusal):
        if row.code == "budget":
            charged, pending = (int(part) for part in row.detail.split())
            return Outcome(code=row.code, spend=(charged, pending))
        return Outcome(code=row.code)
    code, balance, reserved, charge_id = row
    return Outcome(code=code, balance=balance, reserved=reserved, charge_id=charge_id)
