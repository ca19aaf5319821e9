"""Prices in force and the one conversion from usage to micro-credits.

The unit of a quantity and the unit of a price are both stated, and charge_for converts between
them explicitly (x3600 for unit-hours priced per unit-second) or refuses: a per-second price read
as per-hour is the 3600x error a peer system shipped.
"""

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Q

from creditservice.lib.errors import ApiError
from creditservice.lib.money import charge_micros
from quotas.models import ResourceType

from .models import Price

SECONDS_PER_HOUR = 3600


class QuantityUnit:
    """What a quantity counts. UsageRecord quantities are in UNIT_HOURS (duration) or UNITS (count)."""

    UNIT_HOURS = "unit_hours"
    UNIT_SECONDS = "unit_seconds"
    UNITS = "units"


class UnitMismatch(ApiError):
    """A price whose unit cannot apply to the quantity (per-unit price on a duration, or the reverse)."""

    status_code = 409
    code = "unit_mismatch"


class PriceMissing(ApiError):
    """No price version covers (part of) a window: nothing can be charged until staff add one."""

    status_code = 409
    code = "price_missing"


@dataclass(frozen=True)
class PriceSegment:
    start: datetime
    end: datetime
    price: Price


def quantity_unit_of(resource_type: ResourceType) -> str:
    """The unit of a UsageRecord/UsageEvent quantity of this type (its billing unit)."""
    if resource_type.metering == ResourceType.Metering.DURATION:
        return QuantityUnit.UNIT_HOURS
    return QuantityUnit.UNITS


def price_per_matches_metering(per: str, metering: str) -> bool:
    if metering == ResourceType.Metering.DURATION:
        return per in (Price.Per.UNIT_HOUR, Price.Per.UNIT_SECOND)
    return per == Price.Per.UNIT


def price_in_force(resource_type: ResourceType | int, at: datetime) -> Price | None:
    type_id = resource_type if isinstance(resource_type, int) else resource_type.id
    return (
        Price.objects.filter(resource_type_id=type_id, effective_from__lte=at)
        .filter(Q(effective_to__isnull=True) | Q(effective_to__gt=at))
        .order_by("-effective_from")
        .first()
    )


def price_segments(resource_type: ResourceType | int, window_start: datetime, window_end: datetime) -> list[PriceSegment]:
    """Split [window_start, window_end) at price boundaries: one segment per price version in force.

    Raises PriceMissing if any part of the window has no price (a gap is never charged as zero).
    """
    if window_end <= window_start:
        raise ValueError("window_end must be after window_start")
    type_id = resource_type if isinstance(resource_type, int) else resource_type.id
    versions = (
        Price.objects.filter(resource_type_id=type_id, effective_from__lt=window_end)
        .filter(Q(effective_to__isnull=True) | Q(effective_to__gt=window_start))
        .select_related("resource_type")
        .order_by("effective_from")
    )
    segments: list[PriceSegment] = []
    cursor = window_start
    for price in versions:
        start = max(price.effective_from, window_start)
        end = min(price.effective_to or window_end, window_end)
        if start > cursor:
            break
        segments.append(PriceSegment(start=start, end=end, price=price))
        cursor = end
    if cursor < window_end:
        raise PriceMissing(f"no price for resource type {type_id} from {cursor.isoformat()} to {window_end.isoformat()}")
    return segments


def charge_for(quantity: int, quantity_unit: str, price: Price) -> int:
    """quantity (micro-units of quantity_unit) x price → integer micro-credits, rounded once by the money module.

    Duration quantities are converted to the price's time unit explicitly; a count priced per time,
    or a duration priced per unit, raises UnitMismatch instead of guessing.
    """
    per = price.per
    if quantity_unit == QuantityUnit.UNITS:
        if per != Price.Per.UNIT:
            raise UnitMismatch(f"a count (units) cannot be charged with a price {price.get_per_display()}")
    elif quantity_unit in (QuantityUnit.UNIT_HOURS, QuantityUnit.UNIT_SECONDS):
        if per == Price.Per.UNIT:
            raise UnitMismatch(f"a duration ({quantity_unit}) cannot be charged with a price per unit")
    else:
        raise UnitMismatch(f"unknown quantity unit {quantity_unit!r}")
    # Bring the quantity into the price's unit; integers, so exact, and the only rounding is the one
    # in charge_micros (seconds priced per hour divide the product, not the quantity).
    if quantity_unit == QuantityUnit.UNIT_HOURS and per == Price.Per.UNIT_SECOND:
        return charge_micros(quantity * SECONDS_PER_HOUR, price.unit_price)
    if quantity_unit == QuantityUnit.UNIT_SECONDS and per == Price.Per.UNIT_HOUR:
        return charge_micros(quantity, price.unit_price, rate_per=SECONDS_PER_HOUR)
    return charge_micros(quantity, price.unit_price)


def charge_for_usage(quantity: int, resource_type: ResourceType, price: Price) -> int:
    """A UsageRecord quantity (the type's billing unit) x price; also refuses a price of another type."""
    if price.resource_type_id != resource_type.id:
        raise UnitMismatch(f"price {price.id} is for another resource type")
    return charge_for(quantity, quantity_unit_of(resource_type), price)
