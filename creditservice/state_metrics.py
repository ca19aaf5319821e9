"""Gauges read from the database at each scrape, for alerting: is the ledger sound, is billing on time,
are webhooks getting through, is anything stuck.

Counters (creditservice/lib/metrics.py) say what happened in a process since it started; these say
what the database says now, whichever process serves the scrape, so an alert still holds after every
process restarted. Registered in settings.METRICS_SCRAPE_COLLECTORS: GET /metrics builds a
StateCollector for each scrape. Each area is one or two aggregate queries on indexed columns; an area
whose query fails is left out of that scrape (and logged), the others are still served.

Lives in the project package, not creditservice/lib, because it reads the apps' models.
"""

import logging
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

from django.db import InterfaceError, OperationalError
from django.db.models import Count, Max, Q
from django.utils import timezone
from prometheus_client.core import GaugeMetricFamily

from billing.models import BillingRun, OwedCharge, WebhookDelivery
from creditservice.lib.metrics import PREFIX
from payments.models import StripeEvent
from quotas.models import Reservation
from wallets.models import LedgerCheck

log = logging.getLogger(__name__)

# Every gauge this collector may serve, with its help text (tests check the alert rules against these).
GAUGES = {
    f"{PREFIX}_ledger_check_ok": "1 if the latest ledger check found no drift, 0 if it found some.",
    f"{PREFIX}_ledger_check_last_timestamp_seconds": "When the latest ledger check finished (Unix time).",
    f"{PREFIX}_ledger_check_drifts": "Drifts the latest ledger check found.",
    f"{PREFIX}_billing_last_success_timestamp_seconds":
        "When the latest billing run that finished (succeeded or partial) finished (Unix time).",
    f"{PREFIX}_billing_last_run_failed": "1 if the billing run that finished last stopped with an error.",
    f"{PREFIX}_billing_runs_failed": "Billing runs whose window is unbilled because their last attempt failed.",
    f"{PREFIX}_billing_owed_charges": "Charges billing runs still owe (retried by the hourly beat).",
    f"{PREFIX}_outbound_webhooks_failing":
        "Outbound webhook deliveries failing now (state=retrying) or given up on in the last day (state=gave_up).",
    f"{PREFIX}_reservations_overdue": "Pending reservations past their expiry by more than the grace (the expiry task is behind).",
    f"{PREFIX}_stripe_events_failed": "Stored Stripe events that could not be applied (reprocess from the admin).",
}

# The expiry task runs every minute: a hold still pending this long after its expiry means it is not running.
RESERVATION_OVERDUE_GRACE = timedelta(minutes=5)
# A delivery given up on stays interesting for a day (staff redeliver it or fix the endpoint).
GAVE_UP_LOOKBACK = timedelta(days=1)


def _gauge(name: str, value: float, labels: dict[str, str] | None = None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, GAUGES[name], labels=list(labels or {}))
    family.add_metric(list((labels or {}).values()), value)
    return family


def _ledger_check(now: datetime) -> Iterator[GaugeMetricFamily]:
    # Newest first is the model's index (ledger_check_recent). No check yet: no series, so an alert on
    # absence (not a 0) tells a ledger check that never ran.
    latest = LedgerCheck.objects.order_by("-started_at", "-id").values("ok", "finished_at", "drift_count").first()
    if latest is None:
        return
    yield _gauge(f"{PREFIX}_ledger_check_ok", 1.0 if latest["ok"] else 0.0)
    yield _gauge(f"{PREFIX}_ledger_check_last_timestamp_seconds", latest["finished_at"].timestamp())
    yield _gauge(f"{PREFIX}_ledger_check_drifts", float(latest["drift_count"]))


def _billing(now: datetime) -> Iterator[GaugeMetricFamily]:
    finished = BillingRun.objects.filter(finished_at__isnull=False)
    totals = BillingRun.objects.aggregate(
        last_success=Max("finished_at", filter=Q(status__in=[BillingRun.Status.SUCCEEDED, BillingRun.Status.PARTIAL])),
        failed=Count("id", filter=Q(status=BillingRun.Status.FAILED)),
    )
    last_status = finished.order_by("-finished_at", "-id").values_list("status", flat=True).first()
    if totals["last_success"] is not None:
        yield _gauge(f"{PREFIX}_billing_last_success_timestamp_seconds", totals["last_success"].timestamp())
    yield _gauge(f"{PREFIX}_billing_last_run_failed", 1.0 if last_status == BillingRun.Status.FAILED else 0.0)
    yield _gauge(f"{PREFIX}_billing_runs_failed", float(totals["failed"]))
    owed = OwedCharge.objects.filter(status=OwedCharge.Status.OWED).count()
    yield _gauge(f"{PREFIX}_billing_owed_charges", float(owed))


def _outbound_webhooks(now: datetime) -> Iterator[GaugeMetricFamily]:
    counts = WebhookDelivery.objects.aggregate(
        retrying=Count("id", filter=Q(status=WebhookDelivery.Status.RETRYING)),
        gave_up=Count("id", filter=Q(status=WebhookDelivery.Status.FAILED, created_at__gte=now - GAVE_UP_LOOKBACK)),
    )
    family = GaugeMetricFamily(f"{PREFIX}_outbound_webhooks_failing", GAUGES[f"{PREFIX}_outbound_webhooks_failing"],
                               labels=["state"])
    family.add_metric(["retrying"], float(counts["retrying"]))
    family.add_metric(["gave_up"], float(counts["gave_up"]))
    yield family


def _reservations(now: datetime) -> Iterator[GaugeMetricFamily]:
    # Served by the partial index reservation_pending_expiry (pending holds by expires_at).
    overdue = Reservation.objects.filter(status=Reservation.Status.PENDING,
                                         expires_at__lt=now - RESERVATION_OVERDUE_GRACE).count()
    yield _gauge(f"{PREFIX}_reservations_overdue", float(overdue))


def _stripe_events(now: datetime) -> Iterator[GaugeMetricFamily]:
    failed = StripeEvent.objects.filter(status=StripeEvent.Status.FAILED).count()
    yield _gauge(f"{PREFIX}_stripe_events_failed", float(failed))


AREAS: dict[str, Callable[[datetime], Iterator[GaugeMetricFamily]]] = {
    "ledger_check": _ledger_check,
    "billing": _billing,
    "outbound_webhooks": _outbound_webhooks,
    "reservations": _reservations,
    "stripe_events": _stripe_events,
}


class StateCollector:
    """The gauges of GAUGES, read now. An area whose query fails is skipped; a database that is down or
    timing out (OperationalError) ends the reading at once: each further query would only wait as long."""

    def collect(self) -> Iterator[GaugeMetricFamily]:
        now = timezone.now()
        for area, read in AREAS.items():
            try:
                families = list(read(now))
            except (OperationalError, InterfaceError):
                log.exception("state metrics: the database failed on %s; it and the areas after it are left out", area)
                return
            except Exception:
                log.exception("state metrics: reading %s failed; its gauges are left out of this scrape", area)
                continue
            yield from families
