"""Reads of the staff dashboard on the admin's home page: what needs a look, across every project.

Here because the portal is the top of the dependency graph: it may read every app. Each figure is one
aggregate query (or one row), so the page costs the same with ten projects or a million. A figure is
read only when the staff user may view its model (can_view, as the admin decides it); a figure left
out is None.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime

from django.db.models import Count, Model, Q, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from billing.models import BillingRun, OwedCharge, WebhookDelivery
from payments.models import StripeEvent
from quotas.models import Reservation
from wallets.models import Account, LedgerCheck, Project
from wallets.selectors import wallets_balance_total

from .selectors import SPEND_CHART_DAYS, DailySpend, daily_series, last_utc_days

CanView = Callable[[type[Model]], bool]


@dataclass(frozen=True)
class ProjectCounts:
    grace: int
    suspended: int


@dataclass(frozen=True)
class StripeEventCounts:
    failed: int  # could not be applied; fix the cause, reprocess from the admin
    unprocessed: int  # stored, not processed yet (or its processing crashed)


@dataclass(frozen=True)
class LastBillingRun:
    run: BillingRun | None  # None: billing never ran


@dataclass(frozen=True)
class LastLedgerCheck:
    check: LedgerCheck | None  # None: the ledger was never checked


@dataclass(frozen=True)
class StaffDashboard:
    now: datetime  # the moment the counts were read at (an overdue reservation is overdue as of now)
    credits_outstanding: int | None  # micro-credits held by all wallets
    credits_charged: list[DailySpend] | None  # per UTC day, oldest first, every day present
    projects: ProjectCounts | None
    failed_webhook_deliveries: int | None
    stripe_events: StripeEventCounts | None
    overdue_reservations: int | None
    last_billing_run: LastBillingRun | None
    owed_charges: int | None
    last_ledger_check: LastLedgerCheck | None


def credits_charged_per_day(*, days: int = SPEND_CHART_DAYS, today: date | None = None) -> list[DailySpend]:
    """Credits billing charged per UTC day of the billed hour, net of credit-backs, for the last `days`
    days ending today (zeros included).

    From the runs' totals (one row an hour, which already count later retries of owed charges), not
    from the transfers: a billing run writes up to 100,000 transfers an hour, the runs 24 rows a day.
    A day of more credit-back than charges draws as zero: the chart shows what was charged.
    """
    first, start, end = last_utc_days(days=days, today=today)
    rows = (BillingRun.objects.filter(window_start__gte=start, window_start__lt=end)
            .annotate(day=TruncDate("window_start", tzinfo=UTC)).values("day")
            .annotate(total=Sum("credits_charged")))
    return daily_series({row["day"]: max(row["total"], 0) for row in rows}, first=first, days=days)


def project_counts() -> ProjectCounts:
    counts = Project.objects.aggregate(grace=Count("id", filter=Q(status=Project.Status.GRACE)),
                                       suspended=Count("id", filter=Q(status=Project.Status.SUSPENDED)))
    return ProjectCounts(**counts)


def failed_webhook_deliveries() -> int:
    # Served by the webhook_delivery_due index (it starts with the status).
    return WebhookDelivery.objects.filter(status=WebhookDelivery.Status.FAILED).count()


def stripe_event_counts() -> StripeEventCounts:
    counts = StripeEvent.objects.aggregate(failed=Count("id", filter=Q(status=StripeEvent.Status.FAILED)),
                                           unprocessed=Count("id", filter=Q(status=StripeEvent.Status.RECEIVED)))
    return StripeEventCounts(**counts)


def overdue_reservations(now: datetime) -> int:
    """Pending reservations past their expiry that the expiry task has not released yet (it runs every
    minute: a count that stays up means it is not running). Served by reservation_pending_expiry."""
    return Reservation.objects.filter(status=Reservation.Status.PENDING, expires_at__lt=now).count()


def last_billing_run() -> LastBillingRun:
    return LastBillingRun(run=BillingRun.objects.order_by("-window_start").defer("failures").first())


def owed_charges() -> int:
    # Served by the owed_charge_due index (it starts with the status).
    return OwedCharge.objects.filter(status=OwedCharge.Status.OWED).count()


def last_ledger_check() -> LastLedgerCheck:
    return LastLedgerCheck(check=LedgerCheck.objects.order_by("-started_at", "-id").first())


def staff_dashboard(*, can_view: CanView, now: datetime | None = None, today: date | None = None) -> StaffDashboard:
    """Every figure the user may see. can_view(model): may this user view that model in the admin."""
    now = now or timezone.now()
    return StaffDashboard(
        now=now,
        credits_outstanding=wallets_balance_total() if can_view(Account) else None,
        credits_charged=(credits_charged_per_day(today=today or now.astimezone(UTC).date())
                         if can_view(BillingRun) else None),
        projects=project_counts() if can_view(Project) else None,
        failed_webhook_deliveries=failed_webhook_deliveries() if can_view(WebhookDelivery) else None,
        stripe_events=stripe_event_counts() if can_view(StripeEvent) else None,
        overdue_reservations=overdue_reservations(now) if can_view(Reservation) else None,
        last_billing_run=last_billing_run() if can_view(BillingRun) else None,
        owed_charges=owed_charges() if can_view(OwedCharge) else None,
        last_ledger_check=last_ledger_check() if can_view(LedgerCheck) else None,
    )
