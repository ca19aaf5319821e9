"""Quantities of resources: integer micro-units (1 unit = 1,000,000) in the database and in code.

The grammar, the bound and the conversion are creditservice.lib.money's (one implementation for
amounts and quantities); this module names them for quantities.
"""

from creditservice.lib.money import MAX_QUANTITY_MICROS, MICROS_PER_UNIT, format_micros, parse_micros

__all__ = ["MAX_QUANTITY_MICROS", "MICROS_PER_UNIT", "format_quantity", "parse_quantity"]


def parse_quantity(value: object, *, allow_zero: bool = False) -> int:
    """A decimal string ("0.25") → integer micro-units; anything else, zero or above the bound → MoneyError."""
    return parse_micros(value, allow_zero=allow_zero, maximum=MAX_QUANTITY_MICROS)


def format_quantity(micros: int | None) -> str | None:
    """Integer micro-units → the shortest exact string ("2", "0.5"); None stays None (no limit)."""
    return format_micros(micros)
