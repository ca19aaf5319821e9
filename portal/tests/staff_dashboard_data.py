"""Rows the staff dashboard reads, made as their services leave them (for the dashboard's tests)."""

import itertools
from datetime import UTC, date, datetime, timedelta

from billing.models import BillingRun, OwedCharge, WebhookDelivery, WebhookEndpoint
from creditservice.lib.money import credits_to_micros
from payments.models import StripeEvent
from wallets.models import LedgerCheck, Project

_ids = itertools.count(1)


def hour_of(day: date, hour: int = 0) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=UTC) + timedelta(hours=hour)


def billing_run(window_start: datetime, credits: str, status: str = BillingRun.Status.SUCCEEDED) -> BillingRun:
    """A finished hourly run that charged `credits` in all (negative: more credit-back than charges)."""
    return BillingRun.objects.create(window_start=window_start, window_end=window_start + timedelta(hours=1),
                                     status=status, credits_charged=credits_to_micros(credits), trigger="test",
                                     projects_charged=1, finished_at=window_start + timedelta(hours=1, minutes=5))


def owed_charge(run: BillingRun, project: Project, status: str = OwedCharge.Status.OWED) -> OwedCharge:
    return OwedCharge.objects.create(run=run, first_project_id=project.id, last_project_id=project.id,
                                     project=project, status=status)


def set_status(project: Project, status: str) -> None:
    grace_until = datetime.now(UTC) + timedelta(hours=24) if status == Project.Status.GRACE else None
    Project.objects.filter(id=project.id).update(status=status, grace_until=grace_until)


def webhook_delivery(status: str) -> WebhookDelivery:
    endpoint = WebhookEndpoint.objects.first() or WebhookEndpoint.objects.create(url="https://hooks.example.com/in")
    return WebhookDelivery.objects.create(endpoint=endpoint, event_id=f"evt-{next(_ids)}", event_type="project.grace",
                                          payload={}, status=status)


def stripe_event(status: str) -> StripeEvent:
    return StripeEvent.objects.create(stripe_event_id=f"evt_test_{next(_ids)}", type="checkout.session.completed",
                                      payload={}, status=status)


def ledger_check(started_at: datetime, drifts: list[str] | None = None) -> LedgerCheck:
    drifts = drifts or []
    return LedgerCheck.objects.create(source=LedgerCheck.Source.NIGHTLY, started_at=started_at,
                                      finished_at=started_at + timedelta(seconds=3), ok=not drifts,
                                      wallets_checked=3, drift_count=len(drifts), drifts=drifts)
