"""Ending reservations: commit, release and expire. Creating them is in reservations.py, which also
documents the lock order both follow.
"""

import logging
from datetime import UTC, datetime

from django.db import DatabaseError, connection, transaction
from django.utils import timezone

from creditservice.lib.errors import Conflict, NotFound, ValidationFailed
from creditservice.lib.money import format_amount
from creditservice.lib.retry import retry_transaction
from wallets import ledger
from wallets.models import Account, Transfer

from .. import metrics, selectors
from ..errors import ReservationEnded
from ..models import Reservation
from ..quantities import format_quantity
from ..selectors import db_datetime
from . import functions, statements

log = logging.getLogger(__name__)

_RESERVATION = Reservation._meta.db_table

_END = (
    f"UPDATE {_RESERVATION} SET status = %s, committed_amount = %s, ended_at = %s "
    "WHERE id = %s AND status = 'pending' AND {due} "
    "RETURNING project_id, resource_type_id, quantity, amount, expires_at, created_at"
)


def _end(reservation_id: int, status: str, now: datetime, *, committed_amount: int | None = None,
         overdue: bool = False) -> tuple | None:
    """Compare-and-set pending → status; the row, or None when it was not pending (or not due/overdue)."""
    due = "expires_at <= %s" if overdue else "expires_at > %s"
    with connection.cursor() as cursor:
        cursor.execute(_END.format(due=due), [status, committed_amount, db_datetime(now), reservation_id, db_datetime(now)])
        return cursor.fetchone()


_DROP_QUOTA_HOLD = statements.drop_quota_hold_sql(quantity="%s", used="%s", now="%s", project="%s", type_id="%s")


def _drop_quota_hold(project_id: int, resource_type_id: int, quantity: int, *, to_used: bool, now: datetime) -> None:
    with connection.cursor() as cursor:
        cursor.execute(_DROP_QUOTA_HOLD, [quantity, quantity if to_used else 0, db_datetime(now), project_id,
                                          resource_type_id])


def _current(reservation_id: int, project_id: int | None, now: datetime) -> Reservation:
    queryset = Reservation.objects.select_related("project", "resource_type")
    if project_id is not None:
        queryset = queryset.filter(project_id=project_id)
    reservation = queryset.filter(id=reservation_id).first()
    if reservation is None:
        raise NotFound(f"no reservation {reservation_id}")
    return reservation


def _commit_pending(reservation_id: int, amount: int | None, project_id: int | None, now: datetime) -> tuple | None:
    """Compare-and-set pending (and not overdue) → committed, joined with what the answer and the
    transfer need, in one statement. None: not pending, overdue, another project's, or amount > held."""
    params: list = [db_datetime(now), reservation_id, db_datetime(now)]
    conditions = ""
    if amount is None:
        take = "amount"
    else:
        take = "%s"
        params.insert(0, amount)
        conditions += "AND amount >= %s "
        params.append(amount)
    if project_id is not None:
        conditions += "AND project_id = %s "
        params.append(project_id)
    with connection.cursor() as cursor:
        cursor.execute(statements.commit_pending_sql(take=take, now="%s", reservation="%s", conditions=conditions),
                       params)
        return cursor.fetchone()


@retry_transaction
def reservation_commit(*, reservation_id: int, amount: int | None = None, project_id: int | None = None,
                       actor: str = "system", now: datetime | None = None, _retried: bool = False) -> dict:
    """pending → committed: one ledger transfer wallet → revenue of `amount` (default: all held), the
    rest of the hold released in the same UPDATE, quota reserved → used.

    project_id limits the lookup to one project (scoped callers: another project's reservation is 404).
    Idempotent by state: committing a committed reservation again (same or no amount) returns the same
    body; another amount → 409 reservation_committed. Released → 409 reservation_released; past
    expires_at → 409 reservation_expired (its hold is released then if the task has not done it yet).
    The usual case is one call of the commit function on PostgreSQL; statement by statement elsewhere,
    with no model built: the compare-and-set, the wallet UPDATE and the transfer INSERT
    (ledger.commit_hold), the draw, the quota UPDATE.
    """
    now = now or timezone.now()
    row = _commit_in_steps(reservation_id, amount, project_id, actor, now)
    if row is not None:
        metrics.reservation_ended("committed")
        project_id_, type_id, quantity, held, take, expires_at, created_at, slug, wallet_id, code = row
        return selectors.reservation_body(
            id=reservation_id, project=slug, resource_type=code, quantity=quantity, amount=held,
            status=Reservation.Status.COMMITTED, expires_at=_aware(expires_at), committed_amount=take,
            created_at=_aware(created_at), ended_at=now, now=now,
        )
    # Not committed now: find out why (the rare path may build models).
    return _commit_refused(reservation_id, amount, project_id, actor, now, _retried)


def _commit_in_steps(reservation_id: int, amount: int | None, project_id: int | None, actor: str,
                     now: datetime) -> tuple | None:
    """The commit: compare-and-set, the ledger commit, the quota, in one transaction. On PostgreSQL once
    `migrate` has run, one call of the commit function (functions.py) with the same row back."""
    if functions.enabled():
        return functions.commit(reservation_id=reservation_id, amount=amount, project_id=project_id, actor=actor,
                                now=now)
    with transaction.atomic():
        row = _commit_pending(reservation_id, amount, project_id, now)
        if row is not None:
            project_id_, type_id, quantity, held, take, expires_at, created_at, slug, wallet_id, code = row
            if take > 0:
                ledger.commit_hold(
                    project_id=project_id_, wallet_id=wallet_id, held=held, amount=take, kind=Transfer.Kind.RESERVATION,
                    system_code=Account.System.REVENUE, idempotency_key=statements.COMMIT_KEY.format(reservation_id),
                    reference=statements.COMMIT_REFERENCE.format(reservation_id), actor=actor, reason=f"{format_quantity(quantity)} {code}",
                    resource_type=code,  # it draws from the grants of its type first
                )
            elif held > 0:
                ledger.release(wallet_id=wallet_id, amount=held, project_id=project_id_)
            _drop_quota_hold(project_id_, type_id, quantity, to_used=True, now=now)
    return row


def _commit_refused(reservation_id: int, amount: int | None, project_id: int | None, actor: str, now: datetime,
                    _retried: bool) -> dict:
    reservation = _current(reservation_id, project_id, now)
    if reservation.status == Reservation.Status.PENDING and reservation.expires_at > now:
        if amount is not None and amount > reservation.amount:
            raise ValidationFailed({"amount": [f"must not exceed the held amount {format_amount(reservation.amount)}"]})
        if _retried:
            raise Conflict("the reservation changed while it was being committed; retry", code="reservation_busy")
        # It was pending again by the time we looked (a concurrent statement's view): try once more.
        return reservation_commit(reservation_id=reservation_id, amount=amount, project_id=project_id, actor=actor,
                                  now=now, _retried=True)
    if reservation.status == Reservation.Status.COMMITTED:
        if amount is not None and amount != reservation.committed_amount:
            raise ReservationEnded("committed", "the reservation was already committed with another amount",
                                   committed_amount=format_amount(reservation.committed_amount))
        return selectors.body_of(reservation, now)
    return _refuse_ended(reservation, now)


def _aware(value) -> datetime:
    """A datetime read by raw SQL: aware on PostgreSQL, a naive UTC string or datetime on SQLite."""
    if isinstance(value, str):
        from django.utils.dateparse import parse_datetime

        value = parse_datetime(value)
    return value if timezone.is_aware(value) else value.replace(tzinfo=UTC)


@retry_transaction
def reservation_release(*, reservation_id: int, project_id: int | None = None, now: datetime | None = None) -> dict:
    """pending → released: the credit hold and the quota hold go back. Idempotent by state: releasing a
    released reservation returns the same body. Committed → 409 reservation_committed; past
    expires_at → 409 reservation_expired (its hold is released then if the task has not done it yet)."""
    now = now or timezone.now()
    reservation = _current(reservation_id, project_id, now)
    if reservation.status == Reservation.Status.PENDING and reservation.expires_at > now:
        with transaction.atomic():
            row = _end(reservation.id, Reservation.Status.RELEASED, now)
            if row is not None:
                _release_holds(row, now)
        if row is not None:
            metrics.reservation_ended("released")
            reservation.status, reservation.ended_at = Reservation.Status.RELEASED, now
            return selectors.body_of(reservation, now)
        reservation = _current(reservation_id, project_id, now)
    if reservation.status == Reservation.Status.RELEASED:
        return selectors.body_of(reservation, now)
    if reservation.status == Reservation.Status.COMMITTED:
        raise ReservationEnded("committed", committed_amount=format_amount(reservation.committed_amount))
    return _refuse_ended(reservation, now)


def _refuse_ended(reservation: Reservation, now: datetime) -> dict:
    if reservation.status == Reservation.Status.RELEASED:
        raise ReservationEnded("released")
    if reservation.status == Reservation.Status.PENDING:  # overdue: expire it now rather than wait for the task
        reservation_expire(reservation_id=reservation.id, now=now)
    raise ReservationEnded("expired", expires_at=selectors.iso(reservation.expires_at))


def _release_holds(row: tuple, now: datetime) -> None:
    project_id, type_id, quantity, held, _, _ = row
    if held > 0:
        ledger.release(wallet_id=ledger.wallet_account_id(project_id), amount=held, project_id=project_id)
    _drop_quota_hold(project_id, type_id, quantity, to_used=False, now=now)


@retry_transaction
def reservation_expire(*, reservation_id: int, now: datetime | None = None) -> bool:
    """pending and past expires_at → expired, holds released. False when it was not (any more) overdue."""
    now = now or timezone.now()
    with transaction.atomic():
        row = _end(reservation_id, Reservation.Status.EXPIRED, now, overdue=True)
        if row is not None:
            _release_holds(row, now)
    if row is not None:
        metrics.reservation_ended("expired")
    return row is not None


def reservations_expire(*, project_id: int | None = None, now: datetime | None = None, batch: int = 500) -> int:
    """Expire overdue pending reservations (of one project, or all), one short transaction each.

    Safe to run twice or concurrently: each is claimed by compare-and-set, so it expires once. One
    reservation whose release the database refuses (a quota row that no longer covers its hold) is
    logged and left pending, where check_ledger reports it; it never stops the others expiring.
    """
    now = now or timezone.now()
    overdue = Reservation.objects.filter(status=Reservation.Status.PENDING, expires_at__lte=now)
    if project_id is not None:
        overdue = overdue.filter(project_id=project_id)
    count = 0
    refused: set[int] = set()
    while True:
        ids = list(overdue.exclude(id__in=refused).order_by("expires_at", "id").values_list("id", flat=True)[:batch])
        for reservation_id in ids:
            try:
                count += reservation_expire(reservation_id=reservation_id, now=now)
            except DatabaseError:
                log.exception("reservation %s could not be expired; it stays pending", reservation_id)
                refused.add(reservation_id)
        if len(ids) < batch:
            return count
