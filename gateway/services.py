"""Writes of gateway admission: charging one call, and adding metered routes.

Lock order, the one quotas/services/reservations.py documents: (1) this call's own charge row (the
INSERT that claims (project, request id) under its unique index: a concurrent authorize of the same
request waits there, holding nothing else), (2) the project's wallet row (the ledger's charge, one
conditional UPDATE: charges of one project are serialized and available never goes below zero; the
draw from the grants runs under that lock), (3) the budget's spend, only read under that lock.

No ORM model is built on the way. On PostgreSQL a charge is one round trip: one call of the function
in fastpath.py, in autocommit, which makes the claim, the charge, the draw and the budget check (the
API key lookup before it also reads the project, api.py). An allowed call of a metered route is the
key lookup and that call: two round trips, with or without a budget. SQLite (in-process, where round
trips cost little), and PostgreSQL until `migrate` has created the function, take _charge_once(): the
same steps statement by statement in one transaction.

Which rule lives where: the claim and its outcomes here and in fastpath.py (the same order and
answers on both paths); the debit, transfer and draw in wallets/ledger; the spend and the budget rule
in quotas (selectors.spend_sql, services.budget_exceeded); the refusal answers below (_refusal).
"""

import hashlib
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from creditservice.lib.errors import ApiError, Conflict, InsufficientCredits, ValidationFailed
from creditservice.lib.money import format_amount
from creditservice.lib.queries import db_datetime
from creditservice.lib.retry import retry_transaction
from quotas import selectors as quota_selectors
from quotas.errors import ProjectSuspended
from quotas.models import ResourceType
from quotas.services import budget_exceeded, budget_refusal, reservations_expire
from wallets import ledger
from wallets import selectors as wallet_selectors
from wallets.models import Project, Transfer

from . import fastpath, selectors
from .models import GatewayCharge, MeteredRoute

_CHARGE = GatewayCharge._meta.db_table
# Projects that answer no call at all; a project in grace is out of credits, and is told so (402).
_SUSPENDED = (Project.Status.SUSPENDED.value, Project.Status.CLOSED.value)


class RequestIdReused(ApiError):
    """The request id (or Idempotency-Key) was already charged for another method or path."""

    status_code = 403
    code = "request_id_reused"


@dataclass(frozen=True)
class Admission:
    """An allowed call. available: micro-credits left after it (None when the call is not metered)."""

    project: str
    metered: bool
    charged: int = 0  # micro-credits this authorize charged (0 when not metered or replayed)
    replayed: bool = False  # the request id was charged before: nothing charged now
    available: int | None = None


class _Denied(Exception):
    """Raised inside the charging transaction to roll it back (the claim too); carries the refusal."""

    def __init__(self, error: ApiError, retry_after_expiry: bool):
        super().__init__(str(error))
        self.error = error
        self.retry_after_expiry = retry_after_expiry


def call_fingerprint(method: str, path: str) -> str:
    return hashlib.sha256(f"{method.upper()} {path}".encode()).hexdigest()


_BUDGET_DETAIL = "this call would take the month's spend above the budget"


def _reused() -> _Denied:
    return _Denied(RequestIdReused("this request id (or Idempotency-Key) was already charged for another call"),
                   retry_after_expiry=False)


def _suspended(project: "quota_selectors.ProjectRef") -> _Denied:
    return _Denied(ProjectSuspended(f"project {project.slug!r} is {project.status}: it takes no calls",
                                    status=project.status), retry_after_expiry=False)


def _insufficient(project: "quota_selectors.ProjectRef", route: selectors.Route) -> _Denied:
    return _Denied(InsufficientCredits("not enough available credits for this call",
                                       available=format_amount(_available(project.wallet_id, route)),
                                       requested=format_amount(route.price)), retry_after_expiry=True)


def _reason(route: selectors.Route) -> str:
    return f"1 {route.resource_type} ({route.method} {route.path_prefix})"


_CLAIM = (
    f"INSERT INTO {_CHARGE} (project_id, request_id, route_id, amount, fingerprint, created_at) "
    "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (project_id, request_id) DO NOTHING RETURNING id"
)


def _available(wallet_id: int, route: selectors.Route) -> int:
    """What admission counts for a call of this route (only grants that apply to its resource type)."""
    return wallet_selectors.available_for(wallet_id, now=timezone.now(), resource_type=route.resource_type)


def _charge_once(*, project: "quota_selectors.ProjectRef", route: selectors.Route, request_id: str,
                 fingerprint: str, actor: str, now: datetime) -> Admission:
    with transaction.atomic():
        with connection.cursor() as cursor:
            # (1) Claim the request id.
            cursor.execute(_CLAIM, [project.id, request_id, route.id, route.price, fingerprint, db_datetime(now)])
            row = cursor.fetchone()
        if row is None:
            first = GatewayCharge.objects.filter(project_id=project.id, request_id=request_id).values_list(
                "fingerprint", flat=True).get()
            if first != fingerprint:
                raise _reused()
            return Admission(project=project.slug, metered=True, replayed=True, available=_available(project.wallet_id, route))
        if project.status in _SUSPENDED:
            raise _suspended(project)
        # (2) The wallet: balance -= price where available covers it, and the transfer.
        state = ledger.charge_available(
            project_id=project.id, wallet_id=project.wallet_id, amount=route.price, kind=Transfer.Kind.USAGE,
            idempotency_key=f"v1:gateway:{row[0]}", reference=f"gateway:{row[0]}",
            reason=_reason(route), actor=actor, resource_type=route.resource_type,
        )
        if state is None:
            raise _insufficient(project, route)
        # (3) The budget, read under the wallet row lock; the charge above already counts.
        if project.has_budget:
            refusal = budget_refusal(project_id=project.id, wallet_id=project.wallet_id, amount=route.price, now=now,
                                     detail=_BUDGET_DETAIL)
            if refusal is not None:
                raise _Denied(refusal, retry_after_expiry=True)
        return Admission(project=project.slug, metered=True, charged=route.price, available=state.available)


def _charge_in_one_call(*, project: "quota_selectors.ProjectRef", route: selectors.Route, request_id: str,
                        fingerprint: str, actor: str, now: datetime) -> Admission:
    """_charge_once() as one call of the PostgreSQL function (fastpath.py), with the same answers."""
    outcome = fastpath.authorize(project=project, route_id=route.id, price=route.price,
                                 resource_type=route.resource_type, request_id=request_id,
                                 fingerprint=fingerprint, suspended=project.status in _SUSPENDED,
                                 reason=_reason(route), actor=actor, now=now)
    if outcome.code == "allowed":
        state = ledger.WalletState(balance=outcome.balance, reserved=outcome.reserved)
        # Committed already: the hooks run just after the money, not in its transaction (each re-reads
        # what it needs; the changed hooks defer their work to after the commit in any case).
        ledger.after_charge(project_id=project.id, state=state)
        return Admission(project=project.slug, metered=True, charged=route.price, available=state.available)
    if outcome.code == "replayed":
        return Admission(project=project.slug, metered=True, replayed=True, available=_available(project.wallet_id, route))
    if outcome.code == "reused":
        raise _reused()
    if outcome.code == "suspended":
        raise _suspended(project)
    if outcome.code == "insufficient":
        raise _insufficient(project, route)
    if outcome.code == "budget":
        charged, pending = outcome.spend
        refusal = budget_exceeded(hard_limit=project.budget_limit, charged=charged, pending=pending,
                                  amount=route.price, detail=_BUDGET_DETAIL)
        assert refusal is not None
        raise _Denied(refusal, retry_after_expiry=True)
    raise AssertionError(f"unknown outcome {outcome.code!r}")


@retry_transaction
def gateway_authorize(*, project_id: int, request_id: str, method: str, uri: str, actor: str,
                      now: datetime | None = None, project: "quota_selectors.ProjectRef | None" = None) -> Admission:
    """Admit one call of `method` to `uri` for the project, charging its metered route's price once per
    request id. Refusals raise InsufficientCredits or BudgetExceeded (402), ProjectSuspended or
    RequestIdReused (403) and write nothing. A call no route meters is admitted without a charge.
    As for reservations, a refusal while overdue reservations still hold credits expires those first
    and tries once more. `project`: the project as the caller read it already (the key lookup)."""
    now = now or timezone.now()
    route = selectors.route_for(method, uri)
    if project is None or project.id != project_id:
        project = quota_selectors.project_ref(project_id=project_id)
    if project is None:
        raise ValueError(f"no project {project_id}")  # a key's project is never deleted (PROTECT)
    if route is None:
        return Admission(project=project.slug, metered=False)
    fingerprint = call_fingerprint(method, selectors.normalized_path(uri))
    charge = _charge_in_one_call if fastpath.enabled() else _charge_once
    for attempt in (1, 2):
        try:
            return charge(project=project, route=route, request_id=request_id, fingerprint=fingerprint,
                          actor=actor, now=now)
        except _Denied as denial:
            if attempt == 1 and denial.retry_after_expiry and reservations_expire(project_id=project.id, now=now):
                continue
            raise denial.error from None
    raise AssertionError("unreachable")


def metered_route_create(*, method: str, path_prefix: str, resource_type: ResourceType, price: int) -> MeteredRoute:
    """A new route (validated by the caller); the same method and prefix twice is a 409. In force on this
    worker at once, on the others within GATEWAY_ROUTE_CACHE_SECONDS."""
    if resource_type.metering != ResourceType.Metering.COUNT:
        raise ValidationFailed({"resource_type": [f"{resource_type.code} is metered by duration: a gateway route "
                                                  "needs a resource type counted per call (such as api_call)"]})
    try:
        with transaction.atomic():
            route = MeteredRoute.objects.create(method=method, path_prefix=path_prefix, resource_type=resource_type,
                                                price=price)
    except IntegrityError:
        raise Conflict(f"a route for {method} {path_prefix} already exists", code="route_exists") from None
    transaction.on_commit(selectors.clear_route_cache)
    return route
