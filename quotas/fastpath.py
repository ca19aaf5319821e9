"""Reserve and commit as one SQL statement each, on PostgreSQL: the admission hot path.

The general path in services.py takes several statements per call (a lookup, the claim, the wallet
hold, the quota hold, each its own round trip). Here each call is one statement of data-modifying
CTEs, so the work per request is one round trip (plus BEGIN/COMMIT for a reservation, whose budget
check needs a second statement in the same transaction) and no model is built.

Lock order is the one services/reservations.py documents: reservation row → wallet → quota. Within
one statement the order is forced by data dependency, not by the order the CTEs are written in: the
wallet UPDATE reads the row the reservation INSERT returned (or, on commit, the reservation UPDATE),
and the quota CTE reads the row the wallet UPDATE returned, so PostgreSQL has claimed the reservation
row before it locks the wallet, and locked the wallet before it touches the quota.
All conditional UPDATEs re-check their WHERE on the newest row version after waiting for a lock (READ
COMMITTED), so the guards hold under concurrency. The budget is a sum over other rows, which a
statement would read from the snapshot it started with, before it waited for the wallet lock; so it
is checked by a second statement once the lock is held.

Only PostgreSQL: SQLite has no data-modifying CTEs; services.py falls back to the general path there.

Off by default (settings.ADMISSION_SINGLE_STATEMENT). Measured 2026-11-22 with wrk, 16 keep-alive
clients, reserve + commit as two calls, gunicorn with 2 sync workers, on a 2-core machine shared with
other work: 4 statements per pair here against 11 on the general path, and ~15% less wall time per
pair for a single client (3.0 against 3.5 ms); yet under 16 clients, where the two cores are saturated,
the general path served ~20% more requests (about 400 against 335 req/s, alternating runs, both for 100
wallets and for one hot wallet). The CTE statements cost PostgreSQL more CPU than the short ones
they replace (CTE materialisation, speculative insertion, InitPlans), and on saturated cores CPU, not
round trips, is the limit. Turn it on where the database has cores to spare or is farther away.
"""

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import connection, transaction

from creditservice.lib.money import MAX_AMOUNT_MICROS, MAX_QUANTITY_MICROS
from wallets import ledger
from wallets.models import Account, Transfer

from .models import Quota, QuotaDefault, Reservation, ResourceType
from .selectors import _BUDGET, _PROJECT, _WALLET

_RESERVATION = Reservation._meta.db_table
_QUOTA = Quota._meta.db_table
_DEFAULT = QuotaDefault._meta.db_table
_RESOURCE_TYPE = ResourceType._meta.db_table


def enabled() -> bool:
    return settings.ADMISSION_SINGLE_STATEMENT and connection.vendor == "postgresql"


def _reserve_sql(scoped: bool) -> str:
    scope = " AND p.id = %(scope_project)s" if scoped else ""
    return (
        "WITH src AS ("
        "SELECT p.id AS project_id, p.slug, p.status, p.status = 'active' AS admits, a.id AS wallet_id, "
        f"EXISTS (SELECT 1 FROM {_BUDGET} b WHERE b.project_id = p.id) AS has_budget, "
        # hourly_cost × hours in numeric, capped just above one amount's bound so it fits the bigint
        # columns; no reservation is inserted for a capped amount (a CHECK bounds the column) and
        # services refuses it as a 400 on hourly_cost.
        "COALESCE(%(amount)s::bigint, LEAST(%(hourly_cost)s::numeric * COALESCE(p.min_runtime_hours, %(hours)s), "
        "%(amount_cap)s)::bigint) AS amount, "
        "%(now)s::timestamptz AS now, %(expires_at)s::timestamptz AS until "
        f"FROM {_PROJECT} p JOIN {_WALLET} a ON a.project_id = p.id WHERE p.slug = %(slug)s{scope}), "
        # (1) The reservation row claims the Idempotency-Key first, as in services: a retry of a
        # reservation that is being committed waits here, holding nothing else, so it cannot close a
        # cycle with the commit (which holds that row and wants the wallet).
        f"r AS (INSERT INTO {_RESERVATION} (project_id, resource_type_id, quantity, amount, status, expires_at, "
        "idempotency_scope, idempotency_key, request_fingerprint, actor, created_at) "
        "SELECT src.project_id, %(type_id)s, %(quantity)s, src.amount, 'pending', %(expires_at)s, %(idem_scope)s, "
        f"%(idem_key)s, %(fingerprint)s, %(actor)s, src.now FROM src WHERE src.amount <= {MAX_AMOUNT_MICROS} "
        "ON CONFLICT (idempotency_scope, idempotency_key) DO NOTHING RETURNING id, project_id), "
        # (2) The wallet hold, only for a row that was inserted (a replay holds nothing).
        "claimed AS (SELECT src.* FROM src JOIN r ON r.project_id = src.project_id), "
        f"w AS ({ledger.hold_cte('claimed')}), "
        # (3) The quota, only once the wallet hold is taken (the data dependency orders the locks).
        f'q AS (INSERT INTO {_QUOTA} (project_id, resource_type_id, "limit", used, reserved, updated_at) '
        f'SELECT r.project_id, %(type_id)s, (SELECT d."limit" FROM {_DEFAULT} d WHERE d.resource_type_id = %(type_id)s), '
        "0, %(quantity)s, %(now)s FROM r JOIN w ON true "
        f"ON CONFLICT (project_id, resource_type_id) DO UPDATE SET reserved = {_QUOTA}.reserved + excluded.reserved, "
        f'updated_at = excluded.updated_at WHERE ({_QUOTA}."limit" IS NULL '
        f'OR {_QUOTA}.used + {_QUOTA}.reserved + excluded.reserved <= {_QUOTA}."limit") '
        # As in services: without a limit too, the holds stay within one quantity's bound.
        f"AND {_QUOTA}.used + {_QUOTA}.reserved + excluded.reserved <= {MAX_QUANTITY_MICROS} "
        'RETURNING "limit", used, reserved) '
        "SELECT src.project_id, src.slug, src.status, src.amount, src.has_budget, src.wallet_id, "
        "(SELECT count(*) FROM w), (SELECT id FROM r), (SELECT count(*) FROM q), "
        '(SELECT "limit" FROM q), (SELECT used FROM q), (SELECT reserved FROM q) FROM src'
    )


_RESERVE_SQL: dict[bool, str] = {}


@dataclass(frozen=True)
class ReserveOutcome:
    project_id: int
    slug: str
    status: str
    amount: int
    has_budget: bool
    wallet_id: int
    held: bool  # the wallet hold was taken
    reservation_id: int | None  # None with held: the Idempotency-Key was already used
    quota_held: bool
    # Micro-units of the quota row the statement returned (None when it refused the hold).
    quota_limit: int | None
    quota_used: int | None
    quota_reserved: int | None


def reserve(*, slug: str, scope_project_id: int | None, resource_type_id: int, quantity: int,
            amount: int | None, hourly_cost: int | None, expires_at: datetime, idempotency_scope: str,
            idempotency_key: str, fingerprint: str, actor: str, now: datetime) -> ReserveOutcome | None:
    """Run the reservation statement in the caller's transaction; None when no such project (for this caller)."""
    scoped = scope_project_id is not None
    sql = _RESERVE_SQL.get(scoped)
    if sql is None:
        sql = _RESERVE_SQL[scoped] = _reserve_sql(scoped)
    params = {
        "amount": amount, "hourly_cost": hourly_cost, "hours": settings.MIN_RUNTIME_HOURS, "now": now, "slug": slug,
        "amount_cap": MAX_AMOUNT_MICROS + 1,
        "scope_project": scope_project_id, "type_id": resource_type_id, "quantity": quantity,
        "expires_at": expires_at, "idem_scope": idempotency_scope, "idem_key": idempotency_key,
        "fingerprint": fingerprint, "actor": actor,
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        row = cursor.fetchone()
    if row is None:
        return None
    return ReserveOutcome(project_id=row[0], slug=row[1], status=row[2], amount=row[3], has_budget=row[4],
                          wallet_id=row[5], held=row[6] > 0, reservation_id=row[7], quota_held=row[8] > 0,
                          quota_limit=row[9], quota_used=row[10], quota_reserved=row[11])


def _commit_sql(with_amount: bool, scoped: bool) -> str:
    take = "%(amount)s" if with_amount else "amount"
    conditions = (" AND amount >= %(amount)s" if with_amount else "") + (" AND project_id = %(scope_project)s" if scoped else "")
    return (
        f"WITH r AS (UPDATE {_RESERVATION} SET status = 'committed', committed_amount = {take}, ended_at = %(now)s "
        f"WHERE id = %(id)s AND status = 'pending' AND expires_at > %(now)s{conditions} "
        "RETURNING id, project_id, resource_type_id, quantity, amount, committed_amount, expires_at, created_at), "
        "src AS (SELECT r.project_id, r.amount AS held, r.committed_amount AS charge, %(now)s::timestamptz AS now, "
        "'v1:reservation:' || r.id || ':commit' AS idempotency_key, 'reservation:' || r.id AS reference, "
        # The quantity in micro-units as the shortest decimal, as format_quantity writes it ("0.3 vm").
        "trim_scale(r.quantity::numeric / 1000000)::text || ' ' || rt.code AS reason, %(actor)s::text AS actor, rt.code "
        f"FROM r JOIN {_RESOURCE_TYPE} rt ON rt.id = r.resource_type_id), "
        + ledger.commit_hold_ctes("src", wallet="w", transfer="tr", system_code=Account.System.REVENUE,
                                  kind=Transfer.Kind.RESERVATION)
        + f", q AS (UPDATE {_QUOTA} SET reserved = {_QUOTA}.reserved - r.quantity, used = {_QUOTA}.used + r.quantity, "
        f"updated_at = %(now)s FROM r, w WHERE {_QUOTA}.project_id = r.project_id "
        f"AND {_QUOTA}.resource_type_id = r.resource_type_id RETURNING {_QUOTA}.id) "
        "SELECT r.project_id, r.quantity, r.amount, r.committed_amount, r.expires_at, r.created_at, p.slug, src.code, "
        "w.balance, w.reserved, (SELECT id FROM tr), (SELECT count(*) FROM q), w.id "
        f"FROM r JOIN src ON true JOIN w ON true JOIN {_PROJECT} p ON p.id = r.project_id"
    )


_COMMIT_SQL: dict[tuple[bool, bool], str] = {}


@dataclass(frozen=True)
class CommitOutcome:
    project_id: int
    quantity: int  # micro-units
    held: int
    charge: int
    expires_at: datetime
    created_at: datetime
    slug: str
    resource_type: str


def commit(*, reservation_id: int, amount: int | None, scope_project_id: int | None, actor: str,
           now: datetime) -> CommitOutcome | None:
    """pending → committed with the charge, the released rest, the transfer and quota used, in one
    statement, then the charge's draw from the grants, both in one transaction: the draw must run
    while the commit's lock on the wallet row is held (in autocommit the lock ended with the first
    statement, and concurrent draws on one wallet broke the grants' bounds). None: it was not pending
    and due (or not this caller's, or amount > held) and nothing changed; the caller finds out why."""
    shape = (amount is not None, scope_project_id is not None)
    sql = _COMMIT_SQL.get(shape)
    if sql is None:
        sql = _COMMIT_SQL[shape] = _commit_sql(*shape)
    params = {"amount": amount, "scope_project": scope_project_id, "now": now, "id": reservation_id, "actor": actor}
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            row = cursor.fetchone()
        if row is None:
            return None
        project_id, quantity, held, charge, expires_at, created_at, slug, code, balance, reserved, transfer_id, _, wallet_id = row
        ledger.after_commit_hold(project_id=project_id, balance=balance, reserved=reserved, held=held, charge=charge,
                                 wallet_id=wallet_id, transfer_id=transfer_id)
    return CommitOutcome(project_id=project_id, quantity=quantity, held=held, charge=charge, expires_at=expires_at,
                         created_at=created_at, slug=slug, resource_type=code)
