"""Reads of billing: a project's charges with their breakdown, and its burn rate and runway."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_DOWN, Decimal

from django.db.models import QuerySet, Sum
from django.utils import timezone

from creditservice.lib.money import format_amount, format_rate, proportional_micros
from metering.models import UsageRecord
from quotas.quantities import format_quantity
from wallets.models import Project, Transfer
from wallets.selectors import wallet_figures_of

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
    return proportional_micros(total, 1, BURN_RATE_HOURS) if total > 0 else 0


@dataclass(frozen=True)
class Burn:
    rate_per_hour: int  # micro-credits
    runway_hours: Decimal | None  # None without burn

    def as_body(self) -> dict:
        return {"burn_rate_per_hour": format_amount(self.rate_per_hour),
                "runway_hours": str(self.runway_hours) if self.runway_hours is not None else None}


def project_burn(project: Project) -> Burn:
    """The burn rate and how long the available balance (as admission sees it) lasts at that rate."""
    burn = burn_rate_micros_per_hour(project_id=project.id)
    runway = None
    if burn > 0:
        available = max(wallet_figures_of(project.wallet).available, 0)
        # Hours are not money: two places, rounded down so the runway is never overstated.
        runway = (Decimal(available) / Decimal(burn)).quantize(Decimal("0.01"), rounding=ROUND_DOWN)
    return Burn(rate_per_hour=burn, runway_hours=runway)


def wallet_burn_rate_extension(project: Project) -> dict:
    """Added to GET /projects/{slug}/wallet: burn_rate_per_hour and runway_hours (null without burn)."""
    return project_burn(project).as_body()


# --- Statement lines: a usage charge explained ----------------------------------------------------

# The transfers billing writes for charges (wallet → revenue) and credit-backs (revenue → wallet).
CHARGE_TRANSFER_KINDS = (Transfer.Kind.USAGE, Transfer.Kind.REVERSAL)
_LINE_WORDS = {Charge.Kind.REGULAR: "Usage", Charge.Kind.LATE_ADJUSTMENT: "Late usage",
               Charge.Kind.REVERSAL: "Usage credit-back"}


def _iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class ChargeLine:
    """What a usage transfer was for, read from its charge."""

    charge_id: int
    kind: str
    resource_type: str
    resource_name: str
    window_start: datetime
    window_end: datetime
    quantity: int  # micro-units of `unit`; negative for a credit-back
    unit: str
    rate: int  # pico-credits per `unit`

    @property
    def unit_singular(self) -> str:
        return self.unit.removesuffix("s") if self.unit.endswith("-hours") else self.unit

    @property
    def description(self) -> str:
        start = self.window_start.astimezone(UTC)
        end = self.window_end.astimezone(UTC)
        # A window within one day (an hour ending at midnight included) names its day once.
        same_day = start.date() == (end - timedelta(microseconds=1)).date()
        window = (f"{start:%Y-%m-%d %H:%M}–{end:%H:%M} UTC" if same_day
                  else f"{start:%Y-%m-%d %H:%M} – {end:%Y-%m-%d %H:%M} UTC")
        return (f"{_LINE_WORDS.get(self.kind, 'Usage')} of {self.resource_name} ({self.resource_type}), {window}: "
                f"{format_quantity(abs(self.quantity))} {self.unit} × {format_rate(self.rate)} credits per "
                f"{self.unit_singular}")

    def as_body(self) -> dict:
        return {
            "id": self.charge_id, "kind": self.kind, "resource_type": self.resource_type,
            "window_start": _iso(self.window_start), "window_end": _iso(self.window_end),
            "quantity": format_quantity(self.quantity), "unit": self.unit, "rate": format_rate(self.rate),
        }


def charge_lines(transfers: list[Transfer]) -> dict[int, ChargeLine]:
    """transfer id → its charge's line, for the usage transfers among `transfers`: one query per page.

    By the transfer's idempotency key, which is its charge's (unique index on both); the billing
    batch writes neither a description nor a link it would have to index.
    """
    keys = {t.idempotency_key: t.id for t in transfers if t.kind in CHARGE_TRANSFER_KINDS}
    if not keys:
        return {}
    charges = (Charge.objects.filter(idempotency_key__in=list(keys)).select_related("resource_type")
               .only("id", "idempotency_key", "kind", "window_start", "window_end", "quantity", "unit", "rate",
                     "resource_type__code", "resource_type__display_name"))
    return {keys[c.idempotency_key]: ChargeLine(
        charge_id=c.id, kind=c.kind, resource_type=c.resource_type.code, resource_name=c.resource_type.display_name,
        window_start=c.window_start, window_end=c.window_end, quantity=c.quantity, unit=c.unit, rate=c.rate,
    ) for c in charges}


def transactions_page_extension(transfers: list[Transfer]) -> dict[int, dict]:
    """Added to each line of GET /projects/{slug}/transactions: `charge` (null unless a usage charge or
    credit-back) and, for those, a `description` that says type, window, quantity with unit and rate."""
    lines = charge_lines(transfers)
    return {t.id: ({"charge": lines[t.id].as_body(), "description": lines[t.id].description} if t.id in lines
                   else {"charge": None}) for t in transfers}
