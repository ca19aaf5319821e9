"""Reads of billing: a project's charges with their breakdown, and its burn rate and runway."""

from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal

from django.db.models import QuerySet, Sum
from django.utils import timezone

from creditservice.lib.money import MICROS_PER_CREDIT, charge_micros, format_amount
from metering.models import UsageRecord
from wallets.models import Project

from .models import Charge

BURN_RATE_HOURS = 24


def charges_for_project(*, project: Project, window_start: datetime | None = None, since: datetime | None = None,
                        until: datetime | None = None) -> QuerySet[Charge]:
    charges = Charge.objects.filter(project=project).select_related("resource_type", "price", "transfer")
    if window_start is not None:
        charges = charges.filter(window_start=window_start)
    if since is not None:
        charges = charges.filter(window_start__gte=since)
    if until is not None:
        charges = charges.filter(window_start__lt=until)
    return charges.order_by("-window_start", "resource_type__code", "id")


def usage_records_of(charges: list[Charge]) -> dict[int, UsageRecord]:
    ids = {record_id for charge in charges for record_id in charge.usage_record_ids}
    return UsageRecord.objects.in_bulk(list(ids)) if ids else {}


def burn_rate_micros_per_hour(*, project_id: int, now: datetime | None = None) -> int:
    """Usage charged for windows that started in the last 24 h, per hour (micro-credits, rounded once).

    By window rather than by when the charge was written: a late adjustment counts where its usage
    happened, and the read uses the (project, window) index that billing needs anyway.
    """
    now = now or timezone.now()
    total = (Charge.objects.filter(project_id=project_id, window_start__gt=now - timedelta(hours=BURN_RATE_HOURS))
             .aggregate(total=Sum("amount"))["total"]) or 0
    # Net of reversals (credit-backs); a window of more credit-back than charges burns nothing.
    return charge_micros(Decimal(total) / MICROS_PER_CREDIT, Decimal(1) / BURN_RATE_HOURS) if total > 0 else 0


def wallet_burn_rate_extension(project: Project) -> dict:
    """Added to GET /projects/{slug}/wallet: burn_rate_per_hour and runway_hours (null without burn)."""
    burn = burn_rate_micros_per_hour(project_id=project.id)
    runway = None
    if burn > 0:
        available = max(project.wallet.available, 0)
        # Hours are not money: two places, rounded down so the runway is never overstated.
        runway = str((Decimal(available) / Decimal(burn)).quantize(Decimal("0.01"), rounding=ROUND_DOWN))
    return {"burn_rate_per_hour": format_amount(burn), "runway_hours": runway}
