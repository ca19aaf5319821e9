"""Celery tasks: each loads by id and calls one service; the decisions live in the database."""

import logging

from celery import shared_task

from .models import BillingRun
from .services import alerts, lifecycle, runs, webhooks

log = logging.getLogger(__name__)


@shared_task(name="billing.tasks.billing_run_due")
def billing_run_due() -> list[str]:
    """Hourly (beat): bill every closed window not yet billed, oldest first; retry what is still owed."""
    return runs.billing_catch_up(trigger="beat", parallel=True)


# How many times a redelivered billing task checks back, one lease apart, before it leaves the run to the beat.
TAKEOVER_CHECKS = 5


@shared_task(bind=True, name="billing.tasks.billing_run_window")
def billing_run_window(self, window_start_iso: str, trigger: str = "", takeover_of: int | None = None) -> str:
    """One window, e.g. started by staff from the admin.

    A redelivered message means the worker running it died (late acks, reject on worker lost). The run
    it had claimed looks alive until its lease runs out, so the task checks back then and takes the run
    over (takeover_of: that attempt) instead of leaving the window to the next hourly beat. A plain
    duplicate (the window enqueued twice) just leaves: the run's own worker finishes it.
    """
    from datetime import datetime

    outcome = runs.billing_run_execute(window_start=datetime.fromisoformat(window_start_iso), trigger=trigger,
                                       parallel=True, takeover_of=takeover_of)
    redelivered = bool((self.request.delivery_info or {}).get("redelivered"))
    if not outcome.claimed and outcome.run.status == BillingRun.Status.RUNNING and (redelivered or takeover_of is not None):
        if self.request.retries >= TAKEOVER_CHECKS:
            log.warning("%s; left to the billing beat after %d checks", outcome.message, TAKEOVER_CHECKS)
            return outcome.message
        raise self.retry(kwargs={"window_start_iso": window_start_iso, "trigger": trigger,
                                 "takeover_of": outcome.run.attempt},
                         countdown=runs.billing_run_lease_left(outcome.run) + 1, max_retries=TAKEOVER_CHECKS)
    log.info(outcome.message)
    return outcome.message


@shared_task(name="billing.tasks.billing_run_work")
def billing_run_work_task(run_id: int) -> int:
    """A helper worker: takes chunks of a running run beside the one that started it."""
    return runs.billing_run_work(run_id=run_id)


@shared_task(name="billing.tasks.lifecycle_sweep")
def lifecycle_sweep() -> dict:
    """Every 5 minutes (beat): grace expiry → suspended, and the safety nets of the lifecycle."""
    return lifecycle.lifecycle_sweep()


@shared_task(name="billing.tasks.webhook_delivery_attempt")
def webhook_delivery_attempt(delivery_id: int) -> str | None:
    delivery = webhooks.webhook_delivery_attempt(delivery_id=delivery_id)
    return delivery.status if delivery else None


@shared_task(name="billing.tasks.webhook_deliveries_due")
def webhook_deliveries_due() -> int:
    """Every minute (beat): sends deliveries whose retry is due, in case a queued retry was lost."""
    ids = webhooks.webhook_deliveries_due()
    for delivery_id in ids:
        try:
            webhooks.webhook_delivery_attempt(delivery_id=delivery_id)
        except Exception:  # one broken delivery must not hold back the others; it stays due
            log.exception("webhook delivery %s failed unexpectedly; the next sweep retries it", delivery_id)
    return len(ids)


@shared_task(name="billing.tasks.alert_notification_email")
def alert_notification_email(notification_id: int) -> bool:
    return alerts.alert_notification_email(notification_id=notification_id)


@shared_task(name="billing.tasks.alerts_sweep")
def alerts_sweep() -> dict:
    """Every 5 minutes (beat): runway alerts follow time; balance and budget alerts a missed hook; unsent emails."""
    return alerts.alerts_sweep()
