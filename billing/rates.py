"""Adapter over metering.pricing: the rate of a whole window, so a charge is rounded once.

metering.pricing.charge_for rounds each call. A window that spans a price change is split into
segments (metering.pricing.price_segments); charging each segment with charge_for would round once
per segment. Here the segments' rates are combined, weighted by their share of the window (usage is
taken as even across the window), and rounded once to pico-credits (money.weighted_rate_picos); the
charge is that rate × the window's quantity, rounded once by money.charge_micros. A window under one
price version has that version's rate exactly. The unit rules stay metering's: every segment's price
is checked with charge_for (which raises UnitMismatch) before its rate is used.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, localcontext

from creditservice.lib.money import format_rate, weighted_rate_picos
from metering.models import Price
from metering.pricing import SECONDS_PER_HOUR, QuantityUnit, charge_for, price_segments, quantity_unit_of
from quotas.models import ResourceType

_UNIT_LABEL = {QuantityUnit.UNIT_HOURS: "unit-hours", QuantityUnit.UNITS: "units"}
_MICROSECOND = timedelta(microseconds=1)


@dataclass(frozen=True)
class WindowRate:
    price_id: int  # the version in force at the window's start
    rate: int  # pico-credits per unit of the billing unit
    unit: str  # the billing unit ("vm-hours", "GiB")
    breakdown: list[dict]


def _rate_per_quantity_unit(price: Price, quantity_unit: str) -> int:
    """Pico-credits per one unit of quantity_unit, after metering's unit check."""
    charge_for(0, quantity_unit, price)  # raises UnitMismatch for a price of the wrong kind
    if quantity_unit == QuantityUnit.UNIT_HOURS and price.per == Price.Per.UNIT_SECOND:
        return price.unit_price * SECONDS_PER_HOUR
    return price.unit_price


def window_rate(resource_type: ResourceType, window_start: datetime, window_end: datetime) -> WindowRate:
    """The time-weighted rate of one window. Raises metering's PriceMissing or UnitMismatch."""
    quantity_unit = quantity_unit_of(resource_type)
    segments = price_segments(resource_type.id, window_start, window_end)
    length = (window_end - window_start) // _MICROSECOND
    parts: list[tuple[int, int]] = []
    breakdown = []
    for segment in segments:
        segment_rate = _rate_per_quantity_unit(segment.price, quantity_unit)
        weight = (segment.end - segment.start) // _MICROSECOND
        parts.append((segment_rate, weight))
        with localcontext() as context:
            context.prec = 50
            share = (Decimal(weight) / Decimal(length)).quantize(Decimal("1e-12"))  # shown, not computed with
        breakdown.append({
            "price_id": segment.price.id, "from": segment.start.isoformat(), "to": segment.end.isoformat(),
            "unit_price": format_rate(segment.price.unit_price), "per": segment.price.per,
            "rate_per_billing_unit": format_rate(segment_rate), "share_of_window": str(share),
        })
    return WindowRate(price_id=segments[0].price.id, rate=weighted_rate_picos(parts), unit=resource_type.billing_unit,
                      breakdown=breakdown)
