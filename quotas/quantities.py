"""Quantities of resources: exact decimals with at most 6 places, stored as DecimalField(20, 6)."""

from decimal import Decimal

from creditservice.lib.money import MoneyError, to_decimal

SCALE = 6
_QUANTUM = Decimal(1).scaleb(-SCALE)
# DecimalField(20, 6) holds 14 integer digits.
MAX_QUANTITY = Decimal(10) ** 14 - _QUANTUM


def parse_quantity(value: object, *, allow_zero: bool = False) -> Decimal:
    """A decimal string (or int) → Decimal at the stored scale; floats, NaN, infinities and >6 places refused."""
    try:
        number = to_decimal(value, scale=SCALE)
    except MoneyError as exc:
        raise MoneyError(str(exc).replace("amounts", "quantities")) from None
    if number < 0 or (number == 0 and not allow_zero):
        raise MoneyError("must be greater than zero" if not allow_zero else "must not be negative")
    if number > MAX_QUANTITY:
        raise MoneyError("is too large")
    return number.quantize(_QUANTUM)


def as_quantity(value: object) -> Decimal:
    """A value read back from the database (SQLite may hand back a float or a string) → exact Decimal."""
    if isinstance(value, Decimal):
        return value.quantize(_QUANTUM)
    return Decimal(str(value)).quantize(_QUANTUM)


def format_quantity(value: Decimal | None) -> str | None:
    """Decimal → the shortest exact string ("2", "0.5"); None stays None (no limit)."""
    if value is None:
        return None
    text = format(as_quantity(value), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text
