"""Adapter over metering.pricing: the rate of a whole window, so a charge is rounded once.

metering.pricing.charge_for rounds each call. A window that spans a price change is split into
segments (metering.pricing.price_segments); charging each segment with charge_for would round once
per segment. Here the segments' rates are combined exactly, weighted by their share of the window
(usage is taken as even across the window), and the charge is rounded once by money.charge_micros.
The unit rules stay metering's: every segment's price is checked with charge_for (which raises
UnitMismatch) before its rate is used.
"""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, localcontext

from metering.models import Price
from metering.pricing import SECONDS_PER_HOUR, QuantityUnit, charge_for, price_segments, quantity_unit_of
from quotas.models import ResourceType

_UNIT_LABEL = {QuantityUnit.UNIT_HOURS: "unit-hours", QuantityUnit.UNITS: "units"}


@dataclass(frozen=True)
class WindowRate:
    price_id: int  # the version in force at the window's start
    rate: Decimal  # credits per unit of the billing unit, exact
    unit: str  # the billing unit ("vm-hours", "GiB")
    breakdown: list[dict]


def _rate_per_quantity_unit(price: Price, quantity_unit: str) -> Decimal:
    """Credits per one unit of quantity_unit, after metering's unit check."""
    charge_for(Decimal(0), quantity_unit, price)  # raises UnitMismatch for a price of the wrong kind
    if quantity_unit == QuantityUnit.UNIT_HOURS and price.per == Price.Per.UNIT_SECOND:
        return Decimal(price.unit_price) * SECONDS_PER_HOUR
    return Decimal(price.unit_price)


def window_rate(resource_type: ResourceType, window_start: datetime, window_end: datetime) -> WindowRate:
    """The time-weighted rate of one window. Raises metering's PriceMissing or UnitMismatch."""
    quantity_unit = quantity_unit_of(resource_type)
    segments = price_segments(resource_type.id, window_start, window_end)
    length = Decimal((window_end - window_start).total_seconds())
    rate = Decimal(0)
    breakdown = []
    with localcontext() as context:
        context.prec = 50
        for segment in segments:
            segment_rate = _rate_per_quantity_unit(segment.price, quantity_unit)
            share = Decimal((segment.end - segment.start).total_seconds()) / length
            rate += segment_rate * share
            breakdown.append({
                "price_id": segment.price.id, "from": segment.start.isoformat(), "to": segment.end.isoformat(),
                "unit_price": str(segment.price.unit_price), "per": segment.price.per,
                "rate_per_billing_unit": str(segment_rate), "share_of_window": str(share.quantize(Decimal("1e-12"))),
            })
        rate = rate.quantize(Decimal("1e-18"))
    return WindowRate(price_id=segments[0].price.id, rate=rate, unit=resource_type.billing_unit, breakdown=breakdown)
