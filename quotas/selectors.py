"""Reads of admission control: project and resource type lookups for the hot path, reservation bodies,
quotas and budgets as callers see them, and the ledger invariants that involve holds.

A pending reservation past expires_at counts as expired in every read here, before the expiry task
has released its hold: effective_status() and the `expired` sums below make that so.
"""

import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import Q, Sum

from creditservice.lib.money import format_amount
from creditservice.lib.queries import db_datetime
from wallets.models import Account, Project, Transfer
from wallets.selectors import held_back_for, project_wallet_figures, register_ledger_check, register_overdue_holds

from .models import Budget, Quota, QuotaDefault, Reservation, ResourceType
from .quantities import MAX_QUANTITY_MICROS, format_quantity

_PROJECT = Project._meta.db_table
_WALLET = Account._meta.db_table
_TRANSFER = Transfer._meta.db_table
_BUDGET = Budget._meta.db_table
_QUOTA = Quota._meta.db_table
_DEFAULT = QuotaDefault._meta.db_table
_RESERVATION = Reservation._meta.db_table
_RESOURCE_TYPE = ResourceType._meta.db_table

# Kinds of transfers out of the wallet that count as spend against a budget.
SPEND_KINDS = (Transfer.Kind.RESERVATION.value, Transfer.Kind.USAGE.value)
# Usage given back (a re-collected window came back lower): billing's credit-back, revenue → wallet.
# Spend is net of it, as the customer's statement is.
CREDIT_BACK_KIND = Transfer.Kind.REVERSAL.value


def iso(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z") if value is not None else None


@dataclass(frozen=True)
class ProjectRef:
    """What the admission path needs to know about a project, read in one statement, no model built."""

    id: int
    slug: str
    status: str
    wallet_id: int
    min_runtime_hours: int
    has_budget: bool
    # Micro-credits: the budget's hard limit when it was read (the spend is read under the wallet lock).
    budget_limit: int | None = None

    @property
    def admits_new_resources(self) -> bool:
        return self.status == Project.Status.ACTIVE


def project_ref_sql(project_id: str) -> tuple[str, str]:
    """(columns, joins) of the ProjectRef of the project whose id is the SQL expression `project_id`, so
    a lookup can read it with its own row (the gateway's API key lookup). LEFT JOINs: no project, NULLs."""
    columns = (f"p.id, p.slug, p.status, p.min_runtime_hours, a.id, "
               f"(SELECT b.hard_limit FROM {_BUDGET} b WHERE b.project_id = p.id)")
    joins = f"LEFT JOIN {_PROJECT} p ON p.id = {project_id} LEFT JOIN {_WALLET} a ON a.project_id = p.id"
    return columns, joins


def project_ref_from_row(row: tuple) -> ProjectRef | None:
    """The ProjectRef of the columns of project_ref_sql(); None when there was no project."""
    if row[0] is None:
        return None
    hours = row[3] if row[3] is not None else settings.MIN_RUNTIME_HOURS
    return ProjectRef(id=row[0], slug=row[1], status=row[2], wallet_id=row[4], min_runtime_hours=hours,
                      has_budget=row[5] is not None, budget_limit=row[5])


# (columns, FROM) of project_ref(): also the reserve function's lookup by slug (services/functions.py).
PROJECT_REF_BY_SLUG = (project_ref_sql("p.id")[0], f"{_PROJECT} p JOIN {_WALLET} a ON a.project_id = p.id")


def project_ref(*, slug: str | None = None, project_id: int | None = None) -> ProjectRef | None:
    where, param = ("p.slug = %s", slug) if slug is not None else ("p.id = %s", project_id)
    columns, source = PROJECT_REF_BY_SLUG
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {columns} FROM {source} WHERE {where}", [param])
        row = cursor.fetchone()
    return project_ref_from_row(row) if row is not None else None


# code -> (valid until, id). Codes rarely change and types are never deleted once used (PROTECT);
# a renamed code is picked up within the TTL.
_resource_type_ids: dict[str, tuple[float, int]] = {}
RESOURCE_TYPE_CACHE_SECONDS = 60


def resource_type_id(code: str) -> int | None:
    now = time.monotonic()
    cached = _resource_type_ids.get(code)
    if cached is not None and cached[0] > now:
        return cached[1]
    type_id = ResourceType.objects.filter(code=code).values_list("id", flat=True).first()
    if type_id is not None:
        if len(_resource_type_ids) > 1000:
            _resource_type_ids.clear()
        _resource_type_ids[code] = (now + RESOURCE_TYPE_CACHE_SECONDS, type_id)
    return type_id


def resource_type_codes() -> list[str]:
    """The codes of the resource types, at most 100 (for messages)."""
    return list(ResourceType.objects.order_by("code").values_list("code", flat=True)[:100])


def unknown_resource_type(code: str, codes: list[str] | None = None) -> str:
    """What a caller who named a resource type that does not exist is told: the codes that do."""
    return f"unknown resource type {code!r}; the resource types are: {', '.join(codes or resource_type_codes())}"


def clear_caches() -> None:
    _resource_type_ids.clear()


def resource_type_uses(resource_type: ResourceType) -> list[str]:
    """What already counts in this type's units: its prices, usage, charges, quotas, reservations, ...
    (verbose names, for staff). Found through the relations that point at the type, so quotas names no
    app above it. The staff default limit alone is not a use: it is edited with the type."""
    uses = []
    for relation in ResourceType._meta.related_objects:
        model = relation.related_model
        if model is QuotaDefault:
            continue
        if model._default_manager.filter(**{relation.field.name: resource_type}).exists():
            uses.append(str(model._meta.verbose_name_plural))
    return sorted(uses)


def effective_status(status: str, expires_at: datetime, now: datetime) -> str:
    if status == Reservation.Status.PENDING and expires_at <= now:
        return Reservation.Status.EXPIRED
    return status


def reservation_body(*, id: int, project: str, resource_type: str, quantity: int, amount: int, status: str,
                     expires_at: datetime, committed_amount: int | None, created_at: datetime,
                     ended_at: datetime | None, now: datetime) -> dict:
    return {
        "id": id,
        "project": project,
        "resource_type": resource_type,
        "quantity": format_quantity(quantity),
        "amount": format_amount(amount),
        "status": effective_status(status, expires_at, now),
        "expires_at": iso(expires_at),
        "committed_amount": format_amount(committed_amount) if committed_amount is not None else None,
        "created_at": iso(created_at),
        "ended_at": iso(ended_at),
    }


def body_of(reservation: Reservation, now: datetime) -> dict:
    return reservation_body(
        id=reservation.id, project=reservation.project.slug, resource_type=reservation.resource_type.code,
        quantity=reservation.quantity, amount=reservation.amount, status=reservation.status,
        expires_at=reservation.expires_at, committed_amount=reservation.committed_amount,
        created_at=reservation.created_at, ended_at=reservation.ended_at, now=now,
    )


def reservations_with_status(queryset, status: str, now: datetime):
    """Filter by the status callers see: an overdue pending reservation is 'expired', not 'pending'."""
    if status == Reservation.Status.PENDING:
        return queryset.filter(status=status, expires_at__gt=now)
    if status == Reservation.Status.EXPIRED:
        return queryset.filter(Q(status=status) | Q(status=Reservation.Status.PENDING, expires_at__lte=now))
    return queryset.filter(status=status)


@register_overdue_holds
def overdue_holds(project_ids: list[int], now: datetime) -> dict[int, int]:
    """Micro-credits held by pending reservations past expires_at, by project: admission treats them as
    freed already, so every read of a wallet does too (wallets.selectors.wallet_figures)."""
    rows = Reservation.objects.filter(project_id__in=project_ids, status=Reservation.Status.PENDING, expires_at__lte=now)
    return dict(rows.values("project_id").annotate(s=Sum("amount")).values_list("project_id", "s"))


# --- Quotas ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class QuotaRow:
    resource_type: str
    display_name: str
    unit: str
    # Micro-units of the type's unit.
    limit: int | None  # None: no limit
    used: int
    reserved: int  # without holds that are past expires_at
    # True: the project has no quota row of this type, so the staff default (QuotaDefault) applies.
    is_default: bool = False

    @property
    def resource(self) -> str:
        """The name people read (the portal shows it)."""
        return self.display_name

    @property
    def available(self) -> int | None:
        return None if self.limit is None else max(self.limit - self.used - self.reserved, 0)

    def as_body(self, project_slug: str) -> dict:
        return {
            "project": project_slug,
            "resource_type": self.resource_type,
            "unit": self.unit,
            "limit": format_quantity(self.limit),
            "used": format_quantity(self.used),
            "reserved": format_quantity(self.reserved),
            "available": format_quantity(self.available),
            "is_default": self.is_default,
        }


def _overdue_quantities(project_id: int, now: datetime, resource_type_id: int | None = None) -> dict[int, int]:
    rows = Reservation.objects.filter(project_id=project_id, status=Reservation.Status.PENDING, expires_at__lte=now)
    if resource_type_id is not None:
        rows = rows.filter(resource_type_id=resource_type_id)
    return {r["resource_type_id"]: r["q"] for r in rows.values("resource_type_id").annotate(q=Sum("quantity"))}


def project_quotas(project: Project | int, now: datetime | None = None) -> list[QuotaRow]:
    """The quotas that apply to the project, by resource type code: its own quota rows (types it has a
    limit on or has used), and the staff default of every other type that has one (is_default)."""
    from django.utils import timezone

    project_id = project if isinstance(project, int) else project.id
    overdue = _overdue_quantities(project_id, now or timezone.now())
    rows = [
        QuotaRow(resource_type=q.resource_type.code, display_name=q.resource_type.display_name,
                 unit=q.resource_type.unit, limit=q.limit, used=q.used,
                 reserved=max(q.reserved - overdue.get(q.resource_type_id, 0), 0))
        for q in Quota.objects.filter(project_id=project_id).select_related("resource_type")
    ]
    defaults = QuotaDefault.objects.exclude(resource_type__quotas__project_id=project_id).select_related("resource_type")
    rows += [
        QuotaRow(resource_type=d.resource_type.code, display_name=d.resource_type.display_name,
                 unit=d.resource_type.unit, limit=d.limit, used=0, reserved=0, is_default=True)
        for d in defaults
    ]
    return sorted(rows, key=lambda row: row.resource_type)


def quota_row(project_id: int, resource_type: ResourceType, now: datetime) -> QuotaRow:
    """One type's quota as the caller sees it; without a row, the staff default (if any) and nothing used."""
    quota = Quota.objects.filter(project_id=project_id, resource_type=resource_type).first()
    if quota is None:
        default = QuotaDefault.objects.filter(resource_type=resource_type).values_list("limit", flat=True).first()
        return QuotaRow(resource_type=resource_type.code, display_name=resource_type.display_name,
                        unit=resource_type.unit, limit=default, used=0, reserved=0, is_default=default is not None)
    overdue = _overdue_quantities(project_id, now, resource_type.id).get(resource_type.id, 0)
    return QuotaRow(resource_type=resource_type.code, display_name=resource_type.display_name, unit=resource_type.unit,
                    limit=quota.limit, used=quota.used, reserved=max(quota.reserved - overdue, 0))


# --- Budgets ---------------------------------------------------------------------------------

def month_bounds(now: datetime) -> tuple[datetime, datetime]:
    """The budget period: the calendar month in UTC that contains now."""
    start = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start, end


# One statement (it runs on the admission path under the wallet row lock): spend out of the wallet,
# less the credit-backs into it from revenue, this month; and the live pending holds. Each sum is
# served by the transfer's account index.
def spend_sql(*, wallet: str, month_start: str, project: str, now: str) -> str:
    """SQL of (spend this month net of credit-backs, held by live pending reservations) for the SQL
    expressions given; budget_spend() runs it with parameters, gateway admission inside its function."""
    return (
        f"SELECT (SELECT COALESCE(SUM(t.amount), 0) FROM {_TRANSFER} t WHERE t.debit_account_id = {wallet} "
        f"AND t.kind IN ('{SPEND_KINDS[0]}', '{SPEND_KINDS[1]}') AND t.created_at >= {month_start}) "
        f"- (SELECT COALESCE(SUM(t.amount), 0) FROM {_TRANSFER} t WHERE t.credit_account_id = {wallet} "
        f"AND t.kind = '{CREDIT_BACK_KIND}' AND t.created_at >= {month_start} "
        f"AND t.debit_account_id IN (SELECT s.id FROM {_WALLET} s WHERE s.code = '{Account.System.REVENUE.value}')), "
        f"(SELECT COALESCE(SUM(r.amount), 0) FROM {_RESERVATION} r WHERE r.project_id = {project} "
        f"AND r.status = 'pending' AND r.expires_at > {now})"
    )


SPEND_SQL = spend_sql(wallet="%s", month_start="%s", project="%s", now="%s")


def budget_spend(*, project_id: int, wallet_id: int, now: datetime) -> tuple[int, int]:
    """(committed or charged this month net of usage credit-backs, held by live pending reservations),
    in micro-credits. Net spend never goes below zero: a credit-back this month of last month's usage
    does not make room beyond the budget."""
    start, _ = month_bounds(now)
    month_start = db_datetime(start)
    with connection.cursor() as cursor:
        cursor.execute(SPEND_SQL, [wallet_id, month_start, wallet_id, month_start, project_id, db_datetime(now)])
        charged, pending = cursor.fetchone()
    return max(int(charged), 0), int(pending)


@dataclass(frozen=True)
class BudgetStatus:
    hard_limit: int  # micro-credits
    soft_limit: int | None
    spent: int  # committed + charged this month, net of usage credit-backs, + live pending holds
    period_start: datetime
    period_end: datetime

    @property
    def soft_limit_reached(self) -> bool:
        return self.soft_limit is not None and self.spent >= self.soft_limit

    @property
    def remaining(self) -> int:
        return max(self.hard_limit - self.spent, 0)

    def __str__(self) -> str:
        soft = f" (alert at {format_amount(self.soft_limit)})" if self.soft_limit is not None else ""
        return (f"{format_amount(self.spent)} of {format_amount(self.hard_limit)} credits spent or held this month"
                f"{soft}")


def budget_status(project: Project | int, now: datetime | None = None) -> BudgetStatus | None:
    """The project's budget for the current month, or None when it has none."""
    from django.utils import timezone

    now = now or timezone.now()
    project_id = project if isinstance(project, int) else project.id
    budget = Budget.objects.filter(project_id=project_id).first()
    if budget is None:
        return None
    wallet_id = Account.objects.filter(project_id=project_id).values_list("id", flat=True).get()
    charged, pending = budget_spend(project_id=project_id, wallet_id=wallet_id, now=now)
    start, end = month_bounds(now)
    return BudgetStatus(hard_limit=budget.hard_limit, soft_limit=budget.soft_limit, spent=charged + pending,
                        period_start=start, period_end=end)


def budget_body(project_slug: str, status: BudgetStatus | None) -> dict:
    if status is None:
        return {"project": project_slug, "hard_limit": None, "soft_limit": None, "spent": None,
                "remaining": None, "soft_limit_reached": False, "period_start": None, "period_end": None}
    return {
        "project": project_slug,
        "hard_limit": format_amount(status.hard_limit),
        "soft_limit": format_amount(status.soft_limit) if status.soft_limit is not None else None,
        "spent": format_amount(status.spent),
        "remaining": format_amount(status.remaining),
        "soft_limit_reached": status.soft_limit_reached,
        "period_start": iso(status.period_start),
        "period_end": iso(status.period_end),
    }


# --- Admission check (writes nothing) --------------------------------------------------------

def admission_check(*, project: ProjectRef, resource_type: ResourceType, quantity: int, amount: int,
                    now: datetime, until: datetime | None = None) -> dict:
    """Would a reservation be admitted now? The same rules, in the same order, as reservation_create.

    until: when that reservation would expire. As a hold does, it counts only credits that last until
    then and that apply to its resource type (wallets.selectors.held_back_for); holds past their
    expiry are free already, as reservation_create frees them before it refuses."""
    figures = project_wallet_figures(project.id, now=now)
    available = figures.balance - figures.reserved - held_back_for(
        project.wallet_id, now=now, until=until, resource_type=resource_type.code)
    quota = quota_row(project.id, resource_type, now)
    budget = budget_status(project.id, now) if project.has_budget else None
    # Without a limit too, the holds of a type stay within one quantity's bound, as reserve enforces.
    quota_bound = MAX_QUANTITY_MICROS if quota.limit is None else min(quota.limit, MAX_QUANTITY_MICROS)
    reason = None
    if not project.admits_new_resources:
        reason = "project_suspended"
    elif available < amount:
        reason = "insufficient_credits"
    elif quota.used + quota.reserved + quantity > quota_bound:
        reason = "quota_exceeded"
    elif budget is not None and budget.spent + amount > budget.hard_limit:
        reason = "budget_exceeded"
    return {
        "allowed": reason is None,
        "reason": reason,
        "project": project.slug,
        "resource_type": resource_type.code,
        "quantity": format_quantity(quantity),
        "amount": format_amount(amount),
        "available": format_amount(available),
        "quota": {"limit": format_quantity(quota.limit), "used": format_quantity(quota.used),
                  "reserved": format_quantity(quota.reserved)},
        "budget": None if budget is None else {"hard_limit": format_amount(budget.hard_limit),
                                               "spent": format_amount(budget.spent)},
    }


# --- Ledger invariants that involve holds (run by `manage.py check_ledger`) -------------------

@register_ledger_check
def holds_match_pending_reservations() -> list[str]:
    """Each wallet's reserved equals its pending reservations' amounts; each quota's reserved their quantities."""
    drifts: list[str] = []
    pending = Reservation.objects.filter(status=Reservation.Status.PENDING)
    held = {r["project_id"]: r["s"] for r in pending.values("project_id").annotate(s=Sum("amount"))}
    for wallet in Account.objects.filter(kind=Account.Kind.WALLET).values("project_id", "project__slug", "reserved"):
        expected = held.get(wallet["project_id"], 0)
        if wallet["reserved"] != expected:
            drifts.append(f"wallet of project {wallet['project__slug']!r}: reserved {wallet['reserved']} != "
                          f"{expected} held by its pending reservations (micro-credits)")
    quantities = {(r["project_id"], r["resource_type_id"]): r["q"]
                  for r in pending.values("project_id", "resource_type_id").annotate(q=Sum("quantity"))}
    for quota in Quota.objects.values("project_id", "project__slug", "resource_type_id", "resource_type__code", "reserved"):
        expected = quantities.pop((quota["project_id"], quota["resource_type_id"]), 0)
        if quota["reserved"] != expected:
            drifts.append(f"quota {quota['resource_type__code']} of project {quota['project__slug']!r}: reserved "
                          f"{format_quantity(quota['reserved'])} != {format_quantity(expected)} held by its pending "
                          "reservations")
    for (project_id, type_id), quantity in quantities.items():
        drifts.append(f"project {project_id} has pending reservations of {format_quantity(quantity)} on resource type {type_id} "
                      "but no quota row holding them")
    return drifts


# The expiry task runs every minute: a pending hold this long past its expiry is one it is not
# releasing (a row it aborts on, a task that stopped), so its credits and quota stay held.
STUCK_HOLD_AFTER = timedelta(minutes=10)
STUCK_HOLDS_NAMED = 50  # the report names this many; the rest are counted


@register_ledger_check
def no_stuck_holds() -> list[str]:
    """Pending reservations more than STUCK_HOLD_AFTER past expires_at, each named (served by the
    reservation_pending_expiry index)."""
    from django.utils import timezone

    now = timezone.now()
    stuck = (Reservation.objects.filter(status=Reservation.Status.PENDING, expires_at__lt=now - STUCK_HOLD_AFTER)
             .select_related("project", "resource_type").order_by("expires_at", "id"))
    drifts = [
        f"reservation {r.id} of project {r.project.slug!r} ({format_quantity(r.quantity)} {r.resource_type.code}, "
        f"{format_amount(r.amount)} credits held) is still pending {int((now - r.expires_at).total_seconds() // 60)} "
        f"minutes after it expired at {iso(r.expires_at)}: the expiry task is not releasing it"
        for r in stuck[:STUCK_HOLDS_NAMED]
    ]
    if len(drifts) == STUCK_HOLDS_NAMED:
        more = stuck.count() - STUCK_HOLDS_NAMED
        if more:
            drifts.append(f"and {more} more pending reservations long past their expiry")
    return drifts
