"""The SQL of reserve and commit, written once for both ways of running it: statement by statement
(SQLite, and PostgreSQL until `migrate` has created the functions), where each slot is a "%s"
placeholder and the parameters follow the order the slots appear in, and inside the PostgreSQL
functions (functions.py), where each slot is a PL/pgSQL argument or variable.
"""

from wallets.models import Account, Project

from ..models import Quota, QuotaDefault, Reservation, ResourceType
from ..quantities import MAX_QUANTITY_MICROS

_RESERVATION = Reservation._meta.db_table
_QUOTA = Quota._meta.db_table
_DEFAULT = QuotaDefault._meta.db_table
_PROJECT = Project._meta.db_table
_WALLET = Account._meta.db_table
_RESOURCE_TYPE = ResourceType._meta.db_table

# The commit's transfer: its idempotency key and reference, "{}" being the reservation's id.
COMMIT_KEY = "v1:reservation:{}:commit"
COMMIT_REFERENCE = "reservation:{}"


def text_with(template: str, expression: str) -> str:
    """SQL: `template` with its "{}" replaced by the SQL expression (the commit key for a variable)."""
    before, after = template.split("{}")
    return f"'{before}' || {expression} || '{after}'"


def insert_reservation_sql(*, project: str, type_id: str, quantity: str, amount: str, expires_at: str, scope: str,
                           key: str, fingerprint: str, actor: str, now: str) -> str:
    """The new pending row claims the Idempotency-Key under its unique index: a concurrent retry with
    the same key waits on it until the first transaction ends, then finds the row. RETURNING id; no
    row when the key was used before."""
    return (
        f"INSERT INTO {_RESERVATION} (project_id, resource_type_id, quantity, amount, status, expires_at, "
        "idempotency_scope, idempotency_key, request_fingerprint, actor, created_at) "
        f"VALUES ({project}, {type_id}, {quantity}, {amount}, 'pending', {expires_at}, {scope}, {key}, {fingerprint}, "
        f"{actor}, {now}) ON CONFLICT (idempotency_scope, idempotency_key) DO NOTHING RETURNING id"
    )


def hold_quota_sql(*, project: str, type_id: str, quantity: str, now: str) -> str:
    """Holds `quantity` on the project's quota row in one statement. A project's first reservation of a
    type creates the row (limit = the staff default for the type, or NULL = no limit) and the caller
    checks the returned row; an existing row is only changed if used + reserved + quantity <= limit.
    RETURNING limit, used, reserved; no row: the existing row's limit refused it."""
    return (
        f'INSERT INTO {_QUOTA} (project_id, resource_type_id, "limit", used, reserved, updated_at) '
        f'SELECT {project}, {type_id}, (SELECT d."limit" FROM {_DEFAULT} d WHERE d.resource_type_id = {type_id}), '
        f"0, {quantity}, {now} "
        # WHERE: SQLite would otherwise read ON CONFLICT as a join constraint.
        "WHERE 1 = 1 "
        f"ON CONFLICT (project_id, resource_type_id) DO UPDATE "
        f"SET reserved = {_QUOTA}.reserved + excluded.reserved, updated_at = excluded.updated_at "
        f'WHERE ({_QUOTA}."limit" IS NULL OR {_QUOTA}.used + {_QUOTA}.reserved + excluded.reserved <= {_QUOTA}."limit") '
        # Without a limit as well: used + reserved stays within one quantity's bound, so the sum of a
        # project's holds never leaves the bigint column (each term is at most that bound).
        f"AND {_QUOTA}.used + {_QUOTA}.reserved + excluded.reserved <= {MAX_QUANTITY_MICROS} "
        'RETURNING "limit", used, reserved'
    )


def drop_quota_hold_sql(*, quantity: str, used: str, now: str, project: str, type_id: str) -> str:
    """reserved -= quantity and used += `used` (the quantity when committed, 0 when released)."""
    return (f"UPDATE {_QUOTA} SET reserved = reserved - {quantity}, used = used + {used}, updated_at = {now} "
            f"WHERE project_id = {project} AND resource_type_id = {type_id}")


def commit_pending_sql(*, take: str, now: str, reservation: str, conditions: str) -> str:
    """Compare-and-set pending (and not overdue) → committed with `take` charged, joined with what the
    answer and the transfer need: RETURNING project_id, resource_type_id, quantity, amount,
    committed_amount, expires_at, created_at, the project's slug, its wallet's id, the type's code.
    `conditions`: more of the WHERE ("AND …", or ""). Scalar subqueries rather than UPDATE … FROM:
    SQLite's RETURNING may not name the FROM tables."""
    return (
        f"UPDATE {_RESERVATION} SET status = 'committed', committed_amount = {take}, ended_at = {now} "
        f"WHERE id = {reservation} AND status = 'pending' AND expires_at > {now} {conditions}"
        "RETURNING project_id, resource_type_id, quantity, amount, committed_amount, expires_at, created_at, "
        f"(SELECT p.slug FROM {_PROJECT} p WHERE p.id = {_RESERVATION}.project_id), "
        f"(SELECT a.id FROM {_WALLET} a WHERE a.project_id = {_RESERVATION}.project_id), "
        f"(SELECT t.code FROM {_RESOURCE_TYPE} t WHERE t.id = {_RESERVATION}.resource_type_id)"
    )
