"""Reservations: creating them (reserve). Ending them (commit, release, expire) is in settlement.py.

Lock order, the same in every transaction here and in settlement.py, so two of them can never wait on
each other in a cycle: (1) the one reservation row the transaction changes (a compare-and-set UPDATE,
or the INSERT of a new row nobody else can see), (2) the project's wallet row (ledger.hold /
ledger.transfer / ledger.release: one conditional UPDATE), (3) the project's quota row, (4) the
budget, which is only read. Every change of a project's holds takes the wallet row lock first, so the
quota and budget checks made after it in the same transaction are serialized per project. No
transaction changes two reservations: the expiry task expires them one transaction each.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from creditservice.lib.errors import InsufficientCredits, NotFound, ValidationFailed
from creditservice.lib.money import MAX_AMOUNT_MICROS, format_amount
from creditservice.lib.retry import retry_transaction
from wallets import ledger
from wallets import selectors as wallet_selectors
from wallets.idempotency import KeyReused

from .. import metrics, selectors
from ..errors import ProjectSuspended, QuotaExceeded
from ..models import Quota, Reservation
from ..quantities import format_quantity
from ..selectors import ProjectRef, db_datetime
from . import functions, statements
from .limits import budget_exceeded, budget_refusal
from .settlement import reservations_expire


def reservation_ttl(ttl_seconds: int | None) -> timedelta:
    """The requested TTL, capped at RESERVATION_MAX_TTL_SECONDS; RESERVATION_DEFAULT_TTL_SECONDS when absent."""
    seconds = settings.RESERVATION_DEFAULT_TTL_SECONDS if ttl_seconds is None else ttl_seconds
    return timedelta(seconds=max(1, min(seconds, settings.RESERVATION_MAX_TTL_SECONDS)))


def hold_for_min_runtime(*, hourly_cost: int, project: ProjectRef) -> int:
    """Micro-credits to hold so a resource costing hourly_cost per hour can run MIN_RUNTIME_HOURS (or the
    project's). A product beyond one amount's bound (money.MAX_AMOUNT_MICROS) is a 400 on hourly_cost,
    checked here before any SQL: it would overflow the bigint columns it is written to."""
    amount = hourly_cost * project.min_runtime_hours
    if amount > MAX_AMOUNT_MICROS:
        raise min_runtime_hold_too_large(project.min_runtime_hours)
    return amount


def min_runtime_hold_too_large(hours: int | None) -> ValidationFailed:
    runtime = f"{hours} h of minimum runtime" if hours is not None else "the project's minimum runtime"
    return ValidationFailed({"hourly_cost": [
        f"hourly_cost × {runtime} must be at most {format_amount(MAX_AMOUNT_MICROS)} credits"]})


class _Refused(Exception):
    """Raised inside the reservation transaction to roll it back; carries the API error to raise after."""

    def __init__(self, error: Exception, *, project_id: int, retry_after_expiry: bool):
        super().__init__(str(error))
        self.error = error
        self.project_id = project_id  # whose overdue holds to expire before trying again
        self.retry_after_expiry = retry_after_expiry


@dataclass(frozen=True)
class ProjectBySlug:
    """A project a service key named by its slug, not looked up yet: on PostgreSQL the reserve function
    looks it up in the same call (services/functions.py), elsewhere _resolved() does first."""

    slug: str
    scope_project_id: int | None  # a scoped key: the one project it may use


def _resolved(project: "ProjectRef | ProjectBySlug") -> ProjectRef:
    """The project; 404 when there is no project of that slug the key may use (its existence is not revealed)."""
    if isinstance(project, ProjectRef):
        return project
    found = selectors.project_ref(slug=project.slug)
    if found is None or (project.scope_project_id is not None and found.id != project.scope_project_id):
        raise NotFound(f"no project {project.slug!r}")
    return found


@dataclass(frozen=True)
class ReservationResult:
    body: dict
    created: bool


_P = "%s"  # a statement's placeholder: its parameters follow the order of the slots (statements.py)
_INSERT_RESERVATION = statements.insert_reservation_sql(project=_P, type_id=_P, quantity=_P, amount=_P,
                                                        expires_at=_P, scope=_P, key=_P, fingerprint=_P, actor=_P,
                                                        now=_P)
_HOLD_QUOTA = statements.hold_quota_sql(project=_P, type_id=_P, quantity=_P, now=_P)


def _quota_refusal(project_id: int, resource_type_id: int, quantity: int) -> QuotaExceeded:
    row = Quota.objects.filter(project_id=project_id, resource_type_id=resource_type_id).values(
        "limit", "used", "reserved").first() or {"limit": 0, "used": 0, "reserved": 0}
    return _quota_exceeded(limit=row["limit"], used=row["used"], reserved=row["reserved"], quantity=quantity)


def _quota_exceeded(*, limit: int, used: int, reserved: int, quantity: int) -> QuotaExceeded:
    return QuotaExceeded("the quota of this resource type does not allow this quantity",
                         limit=format_quantity(limit), used=format_quantity(used), reserved=format_quantity(reserved),
                         requested=format_quantity(quantity))


def _suspended(project: ProjectRef) -> _Refused:
    return _Refused(ProjectSuspended(f"project {project.slug!r} is {project.status}: it admits no new resources",
                                     status=project.status), project_id=project.id, retry_after_expiry=False)


def _insufficient(project: ProjectRef, amount: int, *, now: datetime, until: datetime, resource_type: str) -> _Refused:
    # Credits scoped to other resource types, or expiring before the hold does, do not cover it.
    available = wallet_selectors.available_for(project.wallet_id, now=now, until=until, resource_type=resource_type)
    return _Refused(InsufficientCredits("not enough available credits for this reservation",
                                        available=format_amount(available), requested=format_amount(amount)),
                    project_id=project.id, retry_after_expiry=True)


_BUDGET_DETAIL = "this reservation would take the month's spend above the budget"


def _reserve_once(*, project: "ProjectRef | ProjectBySlug", resource_type_id: int, resource_type_code: str, quantity: int, amount: int,
                  expires_at: datetime,
                  scope: str, key: str, fingerprint: str, actor: str, now: datetime) -> int | None:
    """One attempt in one transaction; the new reservation's id, or None when the key was already used.
    On PostgreSQL once `migrate` has run, one call of the reserve function (functions.py)."""
    if functions.enabled():
        return _reserve_in_one_call(project=project, resource_type_id=resource_type_id,
                                    resource_type_code=resource_type_code, quantity=quantity, amount=amount,
                                    expires_at=expires_at, scope=scope, key=key, fingerprint=fingerprint, actor=actor,
                                    now=now)
    project = _resolved(project)
    with transaction.atomic():
        with connection.cursor() as cursor:
            # (1) The new row claims the Idempotency-Key (a concurrent retry waits here).
            cursor.execute(_INSERT_RESERVATION, [
                project.id, resource_type_id, quantity, amount, db_datetime(expires_at), scope, key, fingerprint,
                actor, db_datetime(now),
            ])
            row = cursor.fetchone()
            if row is None:
                return None
            if not project.admits_new_resources:
                raise _suspended(project)
            # (2) The wallet row: reserved += amount where available covers it.
            state = ledger.hold(wallet_id=project.wallet_id, amount=amount, until=expires_at,
                                resource_type=resource_type_code)
            if state is None:
                raise _insufficient(project, amount, now=now, until=expires_at, resource_type=resource_type_code)
            # (3) The quota row.
            cursor.execute(_HOLD_QUOTA, [project.id, resource_type_id, resource_type_id, quantity, db_datetime(now)])
            quota = cursor.fetchone()
            if quota is None:
                raise _Refused(_quota_refusal(project.id, resource_type_id, quantity), project_id=project.id,
                               retry_after_expiry=True)
            if quota[0] is not None and quota[1] + quota[2] > quota[0]:  # a new row, over its default limit
                raise _Refused(_quota_exceeded(limit=quota[0], used=quota[1], reserved=0, quantity=quantity),
                               project_id=project.id, retry_after_expiry=True)
            # (4) The budget, read under the wallet row lock.
            if project.has_budget:
                _check_budget(project_id=project.id, wallet_id=project.wallet_id, amount=amount, now=now)
            return row[0]


def _reserve_in_one_call(*, project: "ProjectRef | ProjectBySlug", resource_type_id: int, resource_type_code: str,
                         quantity: int, amount: int, expires_at: datetime, scope: str, key: str, fingerprint: str,
                         actor: str, now: datetime) -> int | None:
    """_reserve_once() as one call of the reserve function, with the same answers: a refusal rolled the
    call back, and its answer is built here as the statement path builds it."""
    by_slug = isinstance(project, ProjectBySlug)
    outcome = functions.reserve(project=None if by_slug else project, slug=project.slug,
                                scope_project_id=project.scope_project_id if by_slug else None,
                                type_id=resource_type_id, type_code=resource_type_code, quantity=quantity,
                                amount=amount, expires_at=expires_at, scope=scope, key=key, fingerprint=fingerprint,
                                actor=actor, now=now)
    if isinstance(outcome, int):
        return outcome
    if outcome == "replayed":
        return None
    if outcome == "no_project":
        raise NotFound(f"no project {project.slug!r}")
    # A refusal: the rare path reads the project for its answer.
    project = _resolved(project)
    figures = [int(part) for part in outcome.detail.split()] if outcome.detail else []
    if outcome.code == "suspended":
        raise _suspended(project)
    if outcome.code == "insufficient":
        raise _insufficient(project, amount, now=now, until=expires_at, resource_type=resource_type_code)
    if outcome.code == "quota":
        raise _Refused(_quota_exceeded(limit=figures[0], used=figures[1], reserved=0, quantity=quantity) if figures
                       else _quota_refusal(project.id, resource_type_id, quantity), project_id=project.id,
                       retry_after_expiry=True)
    hard_limit, charged, pending = figures
    raise _Refused(budget_exceeded(hard_limit=hard_limit, charged=charged, pending=pending, amount=amount,
                                   detail=_BUDGET_DETAIL), project_id=project.id, retry_after_expiry=True)


@retry_transaction
def reservation_create(*, project: "ProjectRef | ProjectBySlug", resource_type: tuple[int, str], quantity: int, amount: int,
                       ttl_seconds: int | None, idempotency_scope: str, idempotency_key: str, fingerprint: str,
                       actor: str, now: datetime | None = None) -> ReservationResult:
    """Hold `amount` micro-credits on the wallet and `quantity` micro-units on the quota, in one transaction.

    resource_type: (id, code). Refusals raise ProjectSuspended (403), InsufficientCredits (402),
    QuotaExceeded (409) or BudgetExceeded (402) and write nothing. A repeated (scope, key) returns the
    first reservation as it was answered then (created=False); another body with that key → 422.
    When a hold is refused while overdue reservations still hold credits or quantity, those are
    expired first (in their own transactions) and the reservation is tried once more.
    """
    now = now or timezone.now()
    expires_at = now + reservation_ttl(ttl_seconds)
    type_id, type_code = resource_type
    for attempt in (1, 2):
        try:
            reservation_id = _reserve_once(
                project=project, resource_type_id=type_id, resource_type_code=type_code, quantity=quantity, amount=amount,
                expires_at=expires_at,
                scope=idempotency_scope, key=idempotency_key, fingerprint=fingerprint, actor=actor, now=now,
            )
        except _Refused as refusal:
            if attempt == 1 and refusal.retry_after_expiry and reservations_expire(project_id=refusal.project_id,
                                                                                   now=now):
                continue
            metrics.admission_refused(refusal.error.code)
            raise refusal.error from None
        break
    if reservation_id is None:
        return ReservationResult(body=_replay(idempotency_scope, idempotency_key, fingerprint), created=False)
    metrics.reservation_created()
    body = selectors.reservation_body(
        id=reservation_id, project=project.slug, resource_type=type_code, quantity=quantity, amount=amount,
        status=Reservation.Status.PENDING, expires_at=expires_at, committed_amount=None, created_at=now,
        ended_at=None, now=now,
    )
    return ReservationResult(body=body, created=True)


def reservation_create_by_slug(*, slug: str, scope_project_id: int | None, resource_type: tuple[int, str],
                               quantity: int, amount: int | None, hourly_cost: int | None, ttl_seconds: int | None,
                               idempotency_scope: str, idempotency_key: str, fingerprint: str, actor: str,
                               now: datetime | None = None) -> ReservationResult:
    """reservation_create for a service key that names the project by slug (scope_project_id: the one
    project a scoped key may use). The same rules and answers. Unknown project → 404. With an amount
    the project is looked up by the reservation's own call (on PostgreSQL, one round trip for both)."""
    project: ProjectRef | ProjectBySlug = ProjectBySlug(slug=slug, scope_project_id=scope_project_id)
    if amount is None:
        project = _resolved(project)
        amount = hold_for_min_runtime(hourly_cost=hourly_cost, project=project)
    return reservation_create(project=project, resource_type=resource_type, quantity=quantity, amount=amount,
                              ttl_seconds=ttl_seconds, idempotency_scope=idempotency_scope,
                              idempotency_key=idempotency_key, fingerprint=fingerprint, actor=actor, now=now)


def _check_budget(*, project_id: int, wallet_id: int, amount: int, now: datetime) -> None:
    """Under the wallet row lock, taken earlier in this transaction (pending includes this reservation)."""
    refusal = budget_refusal(project_id=project_id, wallet_id=wallet_id, amount=amount, now=now,
                             detail=_BUDGET_DETAIL)
    if refusal is not None:
        raise _Refused(refusal, project_id=project_id, retry_after_expiry=True)


def _replay(scope: str, key: str, fingerprint: str) -> dict:
    """The first answer to this key: the reservation as it was created (pending), whatever happened since."""
    reservation = Reservation.objects.select_related("project", "resource_type").get(
        idempotency_scope=scope, idempotency_key=key)
    if reservation.request_fingerprint != fingerprint:
        raise KeyReused("this Idempotency-Key was used with another request body")
    body = selectors.body_of(reservation, reservation.created_at)
    body.update(status=Reservation.Status.PENDING, committed_amount=None, ended_at=None)
    return body
