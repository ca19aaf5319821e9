"""Threshold alerts: a project is told once when a metric crosses a threshold, and once when it recovers.

Metrics (each alert's threshold is in the metric's unit):
- available: the available balance as admission sees it, micro-credits; crossed when it is below.
- runway: whole hours the available balance lasts at the burn rate (billing.selectors: usage charged
  for windows that started in the last 24 h ÷ 24), rounded down; crossed when it is below. Without
  burn the runway is unbounded, so above every threshold.
- budget: spend this month (quotas.selectors.budget_status) in whole percent of the budget's hard
  limit, rounded down; crossed when it is at or above. Without a budget the alert keeps its state.

Each crossing flips the alert's state armed → fired (recovery: fired → armed) by a conditional UPDATE,
and only the transaction whose UPDATE changed the row writes the notification: an outbound webhook
delivery (webhooks.webhook_event_emit, sent by the existing sender) and an AlertNotification row, the
email outbox, sent to the project's owners after the commit. So concurrent evaluations of one crossing
notify once, and a value that stays below notifies nothing more.

Each evaluation reads the committed value and flips on what it read; two evaluations racing in opposite
directions (a debit below and a credit above at once) may leave the state behind the value until the
next evaluation or the sweep, never notify a crossing twice.

When: after every committed wallet change of a project that has alerts (the wallets.ledger
on_wallet_changed hook; a reserve alone is seen when it is committed or released), and every five
minutes by alerts_sweep, which is also how runway alerts follow time passing.
"""

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from creditservice.lib.enqueue import enqueue
from creditservice.lib.errors import Conflict, LimitExceeded, ValidationFailed
from creditservice.lib.money import MAX_AMOUNT_MICROS, MoneyError, format_amount, parse_amount
from quotas.selectors import budget_status
from wallets.models import Membership, Project
from wallets.selectors import project_wallet_figures

from ..models import AlertNotification, ThresholdAlert, WebhookEndpoint
from ..selectors import burn_rate_micros_per_hour
from .webhooks import webhook_event_emit

log = logging.getLogger(__name__)
Metric = ThresholdAlert.Metric
State = ThresholdAlert.State
Change = AlertNotification.Change

MAX_ALERTS_PER_PROJECT = 20
# Inclusive, in the metric's unit: an available threshold of 0 fires when the wallet goes negative.
THRESHOLD_BOUNDS = {Metric.AVAILABLE: (0, MAX_AMOUNT_MICROS), Metric.RUNWAY: (1, 24 * 366), Metric.BUDGET: (1, 100)}
EVENT = {Metric.AVAILABLE: WebhookEndpoint.Event.WALLET_THRESHOLD, Metric.BUDGET: WebhookEndpoint.Event.BUDGET_THRESHOLD,
         Metric.RUNWAY: WebhookEndpoint.Event.RUNWAY_THRESHOLD}
UNIT = {Metric.AVAILABLE: "credits", Metric.RUNWAY: "hours", Metric.BUDGET: "percent"}
# An email claimed this long ago and not sent (the worker died) may be claimed again by the sweep.
EMAIL_LEASE = timedelta(minutes=5)
MAX_EMAIL_ATTEMPTS = 5
SWEEP_EMAIL_BATCH = 500


class AlertRefused(LimitExceeded):
    """An alert beyond the bounds, or one too many for the project (422)."""

    code = "alert_refused"


# --- Which projects have alerts: the hot path's in-memory answer ----------------------------------

# The wallet hook runs inside every reserve commit and transfer, so for the many projects without
# alerts it must cost no query: a process-wide set of the project ids that have alerts, reloaded at
# most every PROJECTS_TTL_SECONDS (one small query) and at once in the process that adds or removes one.
# Another process sees a new alert within the TTL; the sweep evaluates every alert in any case.
PROJECTS_TTL_SECONDS = 30.0
_projects_lock = threading.Lock()
_projects: frozenset[int] = frozenset()
_projects_loaded_at = float("-inf")


def _projects_with_alerts() -> frozenset[int]:
    global _projects, _projects_loaded_at
    if time.monotonic() - _projects_loaded_at < PROJECTS_TTL_SECONDS:
        return _projects
    with _projects_lock:
        if time.monotonic() - _projects_loaded_at >= PROJECTS_TTL_SECONDS:
            _projects = frozenset(ThresholdAlert.objects.values_list("project_id", flat=True).distinct())
            _projects_loaded_at = time.monotonic()
    return _projects


def _forget_projects() -> None:
    global _projects_loaded_at
    _projects_loaded_at = float("-inf")


def alerts_after_wallet_change(project_id: int) -> None:
    """The wallets.ledger on_wallet_changed hook (inside the money's transaction): evaluate the balance
    and budget alerts once it commits, only for a project that has alerts."""
    if project_id in _projects_with_alerts():
        transaction.on_commit(lambda: _evaluate_logged(project_id), robust=True)


def _evaluate_logged(project_id: int, metrics: tuple[str, ...] | None = (Metric.AVAILABLE, Metric.BUDGET)) -> None:
    try:
        alerts_evaluate(project_id=project_id, metrics=metrics)
    except Exception:  # the money is committed; the sweep evaluates again
        log.exception("threshold alerts of project %s could not be evaluated; the alerts sweep retries", project_id)


# --- Adding and removing ---------------------------------------------------------------------------

def alert_threshold_parse(*, metric: str, text: str) -> int:
    """A threshold as people write it (credits as a decimal string; whole hours or percent) → the stored
    integer. ValidationFailed when it is not one (the bounds are alert_create's)."""
    if metric == Metric.AVAILABLE:
        try:
            return parse_amount(text, allow_zero=True)
        except MoneyError as exc:
            raise ValidationFailed({"threshold": [str(exc)]}) from None
    if isinstance(text, str) and text.isascii() and text.isdigit() and len(text) <= 6:
        return int(text)
    raise ValidationFailed({"threshold": [f"a whole number of {UNIT.get(metric, 'hours or percent')}"]})


def alert_create(*, project: Project, metric: str, level: str, threshold: int) -> ThresholdAlert:
    """threshold in the metric's unit (micro-credits, hours, percent). Refused beyond the bounds, or when
    the project has MAX_ALERTS_PER_PROJECT alerts or one on the same metric and threshold already."""
    if metric not in Metric.values or level not in ThresholdAlert.Level.values:
        raise ValidationFailed(f"metric is one of {Metric.values} and level one of {ThresholdAlert.Level.values}")
    low, high = THRESHOLD_BOUNDS[metric]
    if not low <= threshold <= high:
        raise AlertRefused(f"a {metric} threshold is between {_format(metric, low)} and {_format(metric, high)} "
                           f"{UNIT[metric]}")
    with transaction.atomic():
        Project.objects.select_for_update().filter(id=project.id).first()  # serializes the count below
        if ThresholdAlert.objects.filter(project=project).count() >= MAX_ALERTS_PER_PROJECT:
            raise AlertRefused(f"a project has at most {MAX_ALERTS_PER_PROJECT} alerts")
        if ThresholdAlert.objects.filter(project=project, metric=metric, threshold=threshold).exists():
            raise Conflict(f"the project already has a {metric} alert at this threshold", code="alert_exists")
        alert = ThresholdAlert.objects.create(project=project, metric=metric, level=level, threshold=threshold)

        def after_commit() -> None:
            _forget_projects()
            # Armed even if the value already is on the alerting side: this first evaluation fires it, once.
            _evaluate_logged(project.id, metrics=(metric,))

        transaction.on_commit(after_commit)
    return alert


def alert_delete(*, alert: ThresholdAlert) -> None:
    alert.delete()
    transaction.on_commit(_forget_projects)


# --- Evaluating ------------------------------------------------------------------------------------

def metric_value(*, project_id: int, metric: str, now: datetime | None = None) -> int | None:
    """The metric's current value in the threshold's unit; None when unbounded (runway without burn) or
    unknown (budget without a budget, or a hard limit of 0)."""
    if metric == Metric.AVAILABLE:
        return project_wallet_figures(project_id, now=now).available
    if metric == Metric.RUNWAY:
        burn = burn_rate_micros_per_hour(project_id=project_id, now=now)
        if burn <= 0:
            return None
        return max(project_wallet_figures(project_id, now=now).available, 0) // burn
    status = budget_status(project_id, now)
    if status is None or status.hard_limit <= 0:
        return None
    return status.spent * 100 // status.hard_limit


def _crossed(alert: ThresholdAlert, value: int | None) -> bool | None:
    """Whether the value is on the alerting side; None: leave the state as it is."""
    if value is None:
        return False if alert.metric == Metric.RUNWAY else None
    if alert.metric == Metric.BUDGET:
        return value >= alert.threshold
    return value < alert.threshold


def alerts_evaluate(*, project_id: int, metrics: tuple[str, ...] | None = None,
                    now: datetime | None = None) -> list[AlertNotification]:
    """Flip every alert of the project whose value crossed (or recovered); the notifications written."""
    alerts = ThresholdAlert.objects.filter(project_id=project_id)
    if metrics is not None:
        alerts = alerts.filter(metric__in=metrics)
    alerts = list(alerts)
    if not alerts:
        return []
    values: dict[str, int | None] = {}
    notifications = []
    for alert in alerts:
        if alert.metric not in values:
            values[alert.metric] = metric_value(project_id=project_id, metric=alert.metric, now=now)
        crossed = _crossed(alert, values[alert.metric])
        if crossed is None:
            continue
        if crossed and alert.state == State.ARMED:
            notification = _flip(alert, State.ARMED, State.FIRED, values[alert.metric])
        elif not crossed and alert.state == State.FIRED:
            notification = _flip(alert, State.FIRED, State.ARMED, values[alert.metric])
        else:
            continue
        if notification is not None:
            notifications.append(notification)
    return notifications


def _format(metric: str, value: int | None) -> str | None:
    if value is None:
        return None
    return format_amount(value) if metric == Metric.AVAILABLE else str(value)


def alert_body(alert: ThresholdAlert, project_slug: str) -> dict:
    """An alert as the API and the portal show it: amounts and values in the threshold's unit."""
    return {
        "id": alert.id, "project": project_slug, "metric": alert.metric, "level": alert.level,
        "threshold": _format(alert.metric, alert.threshold), "unit": UNIT[alert.metric], "state": alert.state,
        "last_value": _format(alert.metric, alert.last_value),
        "changed_at": alert.changed_at.isoformat().replace("+00:00", "Z") if alert.changed_at else None,
    }


def _flip(alert: ThresholdAlert, from_state: str, to_state: str, value: int | None) -> AlertNotification | None:
    """Compare-and-set the state; only the caller whose UPDATE changed the row notifies."""
    now = timezone.now()
    with transaction.atomic():
        flipped = ThresholdAlert.objects.filter(id=alert.id, state=from_state).update(
            state=to_state, last_value=value, changed_at=now)
        if not flipped:
            return None  # another evaluation of the same crossing got there first
        change = Change.CROSSED if to_state == State.FIRED else Change.RECOVERED
        project = Project.objects.only("id", "slug").get(id=alert.project_id)
        data = {"alert": alert.id, "metric": alert.metric, "level": alert.level, "unit": UNIT[alert.metric],
                "threshold": _format(alert.metric, alert.threshold), "value": _format(alert.metric, value),
                "state": change}
        webhook_event_emit(project=project, event_type=EVENT[alert.metric], data=data)
        notification = AlertNotification.objects.create(alert=alert, change=change, value=value,
                                                        data={"project": project.slug, **data})
        # robust: a failing nudge (or an eager task's failing send) never undoes the committed crossing.
        transaction.on_commit(lambda: _enqueue_email(notification.id), robust=True)
    alert.state, alert.last_value, alert.changed_at = to_state, value, now
    return notification


def _enqueue_email(notification_id: int) -> None:
    from ..tasks import alert_notification_email

    enqueue(alert_notification_email, notification_id)  # not taken: the alerts sweep sends it


# --- Email -----------------------------------------------------------------------------------------

def owner_emails(project_id: int) -> list[str]:
    return sorted(set(Membership.objects.filter(project_id=project_id, role=Membership.Role.OWNER,
                                                user__is_active=True).exclude(user__email="")
                      .values_list("user__email", flat=True)))


@dataclass(frozen=True)
class AlertEmail:
    subject: str
    body: str


def alert_email(data: dict) -> AlertEmail:
    unit = data["unit"]
    value = data["value"] if data["value"] is not None else "unbounded"
    if data["state"] == Change.CROSSED:
        side = "at or above" if data["metric"] == Metric.BUDGET else "below"
        subject = f"[{data['level']}] {data['project']}: {data['metric']} is {side} {data['threshold']} {unit}"
    else:
        subject = f"[recovered] {data['project']}: {data['metric']} is back past {data['threshold']} {unit}"
    body = (f"Project {data['project']}: the {data['metric']} alert ({data['level']}, threshold {data['threshold']} "
            f"{unit}) {data['state']}. The value is now {value} {unit}.\n")
    return AlertEmail(subject=subject, body=body)


def alert_notification_email(*, notification_id: int) -> bool:
    """Send one notification's email to the project's owners, once: claimed by compare-and-set (a task
    and the sweep never both send); a failed send is retried by the sweep after EMAIL_LEASE."""
    now = timezone.now()
    claimed = AlertNotification.objects.filter(
        Q(email_claimed_at__isnull=True) | Q(email_claimed_at__lt=now - EMAIL_LEASE),
        id=notification_id, emailed_at__isnull=True, email_attempts__lt=MAX_EMAIL_ATTEMPTS,
    ).update(email_claimed_at=now, email_attempts=F("email_attempts") + 1)
    if not claimed:
        return False
    notification = AlertNotification.objects.select_related("alert").get(id=notification_id)
    recipients = owner_emails(notification.alert.project_id)
    if recipients:
        message = alert_email(notification.data)
        send_mail(message.subject, message.body, settings.DEFAULT_FROM_EMAIL, recipients)
    AlertNotification.objects.filter(id=notification_id).update(emailed_at=timezone.now())
    return True


# --- The sweep -------------------------------------------------------------------------------------

def alerts_sweep(*, now: datetime | None = None) -> dict[str, int]:
    """Periodic: evaluate every alert (runway follows time; the others are the safety net for a missed
    hook), then send the emails a lost task left unsent. One failing project never stops the sweep."""
    project_ids = ThresholdAlert.objects.order_by("project_id").values_list("project_id", flat=True).distinct()
    notified = failed = 0
    for project_id in list(project_ids):
        try:
            notified += len(alerts_evaluate(project_id=project_id, now=now))
        except Exception:
            failed += 1
            log.exception("alerts sweep: could not evaluate the alerts of project %s", project_id)
    unsent = (AlertNotification.objects.filter(emailed_at__isnull=True, email_attempts__lt=MAX_EMAIL_ATTEMPTS)
              .order_by("created_at").values_list("id", flat=True)[:SWEEP_EMAIL_BATCH])
    emailed = 0
    for notification_id in list(unsent):
        try:
            emailed += alert_notification_email(notification_id=notification_id)
        except Exception:
            failed += 1
            log.exception("alerts sweep: could not email alert notification %s", notification_id)
    return {"notified": notified, "emailed": emailed, "failed": failed}
