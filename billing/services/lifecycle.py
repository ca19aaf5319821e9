"""The project lifecycle: active → grace → suspended, and back to active when funded; and staff
suspensions, which only staff lift.

Each transition locks the project row, re-reads its status and its wallet, writes, records a
ProjectStatusChange and queues the webhook, all in one transaction; a transition that another
worker already made is a quiet no-op. "Available" is the wallet as admission sees it (a hold past
its expiry is already freed: wallets.selectors.wallet_figures).

A staff suspension (suspended_by_staff) is for a reason other than money: funding, the sweep and the
wallet hooks leave it alone; only project_lift_suspension ends it.
"""

import logging
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from creditservice.lib.money import format_amount
from wallets.models import Account, Project
from wallets.selectors import project_wallet_figures

from ..models import BillingRun, Charge, ProjectStatusChange, WebhookEndpoint
from .webhooks import webhook_event_emit

log = logging.getLogger(__name__)
Status = Project.Status
Event = WebhookEndpoint.Event

REASON_UNFUNDED = "a usage charge left the available balance at or below zero"
REASON_GRACE_OVER = "the grace period ended and the wallet is still unfunded"
REASON_FUNDED = "funded: the available balance is above zero"
REASON_TAKEN_BACK = "a refund or debit left the available balance at or below zero"
REASON_LIFTED = "staff lifted the suspension"
REASON_UNFUNDED_AFTER_LIFT = "the available balance is at or below zero"
# A staff reason is at most this long, so "suspended by staff: <reason>" fits ProjectStatusChange.reason.
STAFF_REASON_MAX_LENGTH = Project._meta.get_field("suspension_reason").max_length


def grace_period(project: Project) -> timedelta:
    hours = project.grace_period_hours if project.grace_period_hours is not None else settings.GRACE_PERIOD_HOURS
    return timedelta(hours=hours)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat().replace("+00:00", "Z") if moment else None


def _available(project_id: int) -> int:
    return project_wallet_figures(project_id).available


def _transition(project: Project, to_status: str, reason: str, *, grace_until: datetime | None, event: str, now: datetime,
                staff_reason: str | None = None) -> None:
    """staff_reason: set for a staff suspension, "" when staff lift it, None to leave it as it is."""
    from_status = project.status
    project.status = to_status
    project.grace_until = grace_until
    fields = ["status", "grace_until"]
    if staff_reason is not None:
        project.suspended_by_staff = bool(staff_reason)
        project.suspension_reason = staff_reason
        fields += ["suspended_by_staff", "suspension_reason"]
    project.save(update_fields=fields)
    reason = reason[:ProjectStatusChange._meta.get_field("reason").max_length]
    ProjectStatusChange.objects.create(project=project, from_status=from_status, to_status=to_status, reason=reason,
                                       grace_until=grace_until, at=now)
    webhook_event_emit(project=project, event_type=event, data={
        "status": to_status, "previous_status": from_status, "reason": reason, "grace_until": _iso(grace_until),
        "available": format_amount(_available(project.id)), "suspended_by_staff": project.suspended_by_staff,
    })


def projects_enter_grace_if_unfunded(*, project_ids: Iterable[int]) -> list[int]:
    """After charges: active projects whose available balance is ≤ 0 go into grace. Returns their ids."""
    ids = sorted(set(project_ids))
    # One set-based read finds the few candidates; each is then locked and re-checked.
    candidates = _unfunded_active(ids) if ids else []
    moved = []
    for project_id in candidates:
        if project_enter_grace(project_id=project_id):
            moved.append(project_id)
    return moved


def _unfunded_active(ids: list[int]) -> list[int]:
    if connection.vendor == "postgresql":
        # One array parameter instead of thousands of IN placeholders (a billing chunk has 5,000 projects).
        with connection.cursor() as cursor:
            cursor.cursor.execute(
                f"SELECT p.id FROM {Project._meta.db_table} p JOIN {Account._meta.db_table} a ON a.project_id = p.id "
                "WHERE p.id = ANY(%s::bigint[]) AND p.status = %s AND a.balance - a.reserved <= 0 ORDER BY p.id",
                ["{" + ",".join(map(str, ids)) + "}", Status.ACTIVE],
            )
            return [row[0] for row in cursor.cursor.fetchall()]
    return list(Project.objects.filter(id__in=ids, status=Status.ACTIVE, wallet__balance__lte=F("wallet__reserved"))
                .order_by("id").values_list("id", flat=True))


def project_enter_grace(*, project_id: int, reason: str = REASON_UNFUNDED) -> bool:
    now = timezone.now()
    with transaction.atomic():
        project = Project.objects.select_for_update().get(id=project_id)
        if project.status != Status.ACTIVE or _available(project_id) > 0:
            return False
        _transition(project, Status.GRACE, reason, grace_until=now + grace_period(project), event=Event.PROJECT_GRACE, now=now)
    return True


def project_suspend_if_grace_over(*, project_id: int) -> bool:
    now = timezone.now()
    with transaction.atomic():
        project = Project.objects.select_for_update().get(id=project_id)
        if project.status != Status.GRACE or (project.grace_until and project.grace_until > now):
            return False
        if _available(project_id) > 0:  # funded while the hook was missed: back to active instead
            _transition(project, Status.ACTIVE, REASON_FUNDED, grace_until=None, event=Event.PROJECT_REACTIVATED, now=now)
            return False
        _transition(project, Status.SUSPENDED, REASON_GRACE_OVER, grace_until=None, event=Event.PROJECT_SUSPENDED, now=now)
    return True


def project_enter_grace_if_taken_back(project_id: int) -> bool:
    """The wallets.ledger.on_wallet_unfunded hook: a refund or debit that leaves an active project's
    available balance at or below zero puts it into grace, as a usage charge does."""
    if not Project.objects.filter(id=project_id, status=Status.ACTIVE).exists():
        return False
    return project_enter_grace(project_id=project_id, reason=REASON_TAKEN_BACK)


def project_reactivate_if_funded(project_id: int) -> bool:
    """The wallets.ledger.on_wallet_funded hook: funded at any point → active at once, unless staff
    suspended the project (funding does not lift that)."""
    if not Project.objects.filter(id=project_id, status__in=[Status.GRACE, Status.SUSPENDED],
                                  suspended_by_staff=False).exists():
        return False  # the usual case (an active project topped up) costs one indexed read
    now = timezone.now()
    with transaction.atomic():
        project = Project.objects.select_for_update().get(id=project_id)
        if (project.status not in (Status.GRACE, Status.SUSPENDED) or project.suspended_by_staff
                or _available(project_id) <= 0):
            return False
        _transition(project, Status.ACTIVE, REASON_FUNDED, grace_until=None, event=Event.PROJECT_REACTIVATED, now=now)
    return True


def project_suspend_by_staff(*, project_id: int, reason: str, actor: str) -> bool:
    """Staff suspend a project for a reason other than money. Lasts until project_lift_suspension.
    False when it already was (a repeat is a quiet no-op); a closed project cannot be suspended."""
    reason = reason.strip()
    if not reason:
        raise ValueError("a staff suspension needs a reason")
    if len(reason) > STAFF_REASON_MAX_LENGTH:
        raise ValueError(f"a staff suspension's reason is at most {STAFF_REASON_MAX_LENGTH} characters")
    now = timezone.now()
    with transaction.atomic():
        project = Project.objects.select_for_update().get(id=project_id)
        if project.suspended_by_staff:
            return False
        if project.status == Status.CLOSED:
            raise ValueError(f"project {project.slug!r} is closed")
        _transition(project, Status.SUSPENDED, f"suspended by staff ({actor}): {reason}", grace_until=None,
                    event=Event.PROJECT_SUSPENDED, now=now, staff_reason=reason)
    return True


def project_lift_suspension(*, project_id: int, actor: str) -> bool:
    """Staff lift their suspension: the project is active again if its wallet is funded, else in grace
    (a full grace period from now), as an unfunded active project would be. False when it was not
    suspended by staff (a repeat is a quiet no-op)."""
    now = timezone.now()
    with transaction.atomic():
        project = Project.objects.select_for_update().get(id=project_id)
        if not project.suspended_by_staff:
            return False
        if _available(project_id) > 0:
            _transition(project, Status.ACTIVE, f"{REASON_LIFTED} ({actor})", grace_until=None,
                        event=Event.PROJECT_REACTIVATED, now=now, staff_reason="")
        else:
            _transition(project, Status.GRACE, f"{REASON_LIFTED} ({actor}); {REASON_UNFUNDED_AFTER_LIFT}",
                        grace_until=now + grace_period(project), event=Event.PROJECT_GRACE, now=now, staff_reason="")
    return True


def _each(project_ids: Iterable[int], step: Callable[[int], bool], what: str) -> tuple[int, int]:
    """Run one project's step at a time; a project that fails is logged and counted, the others go on
    (the next sweep tries it again)."""
    done = failed = 0
    for project_id in project_ids:
        try:
            done += bool(step(project_id))
        except Exception:
            failed += 1
            log.exception("lifecycle sweep: could not %s project %s; the next sweep retries it", what, project_id)
    return done, failed


def lifecycle_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Periodic: suspend projects whose grace ended unfunded; reactivate funded ones whose hook was
    missed; and put into grace charged projects left active and unfunded by a crash between a
    chunk's commit and its lifecycle step. One failing project never stops the sweep."""
    now = now or timezone.now()
    over = Project.objects.filter(status=Status.GRACE, grace_until__lte=now).order_by("id").values_list("id", flat=True)
    suspended, failed_suspend = _each(list(over), lambda pid: project_suspend_if_grace_over(project_id=pid), "suspend")
    # A staff suspension is not lifted by money. Funded by the cached columns: a project funded only
    # once its overdue holds are released is found on the sweep after the expiry task released them.
    funded = (Project.objects.filter(status__in=[Status.GRACE, Status.SUSPENDED], suspended_by_staff=False,
                                     wallet__balance__gt=F("wallet__reserved"))
              .order_by("id").values_list("id", flat=True))
    reactivated, failed_reactivate = _each(list(funded), project_reactivate_if_funded, "reactivate")
    lease = timedelta(seconds=settings.BILLING_RUN_LEASE_SECONDS)
    # Charges of runs that were working lately (by the run index: charges have no index by time).
    recent_runs = BillingRun.objects.filter(heartbeat_at__gte=now - 2 * lease).values("id")
    recently_charged = Charge.objects.filter(run__in=recent_runs).values_list("project_id", flat=True).distinct()
    graced, failed_grace = _each(list(recently_charged),
                                 lambda pid: bool(projects_enter_grace_if_unfunded(project_ids=[pid])), "check the funding of")
    return {"suspended": suspended, "reactivated": reactivated, "grace": graced,
            "failed": failed_suspend + failed_reactivate + failed_grace}
