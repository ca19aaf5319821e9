"""Template filters for amounts: exact decimal strings from creditservice.lib.money, grouped for reading."""

from django import template

from creditservice.lib.money import format_amount, format_micros

register = template.Library()


def _grouped(micros: int) -> str:
    text = format_amount(abs(micros))
    whole, _, fraction = text.partition(".")
    whole = f"{int(whole):,}"
    # A true minus sign: it matches the width of "+" and screen readers say "minus".
    return ("\u2212" if micros < 0 else "") + whole + (f".{fraction}" if fraction else "")


@register.filter
def credits(micros: int | None) -> str:
    """Micro-credits → "1,234.5" or "−3" (exact, never rounded)."""
    if micros is None:
        return ""
    return _grouped(int(micros))


@register.filter
def signed_credits(micros: int) -> str:
    """Micro-credits → "+12.5" or "−3" (a true minus sign, read as such by screen readers)."""
    micros = int(micros)
    if micros > 0:
        return "+" + _grouped(micros)
    if micros < 0:
        return _grouped(micros)
    return "0"


@register.filter
def plain_credits(micros: int) -> str:
    """Micro-credits → "1234.5", for form values."""
    return format_amount(int(micros))


@register.filter
def quantity(micros: int | None) -> str:
    """A resource quantity (integer micro-units of the resource's unit) → the shortest exact string: "2", "0.5"."""
    if micros is None:
        return ""
    return format_micros(int(micros))


@register.filter
def percent_of(used: int | float, limit: int | float) -> int:
    """Whole percent of used over limit, capped to 0..100, for usage bars."""
    try:
        if not limit:
            return 0
        return max(0, min(100, int(100 * used / limit)))
    except (TypeError, ValueError, ZeroDivisionError):
        return 0
