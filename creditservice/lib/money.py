"""Money: the one type, one scale and one rounding rule of creditservice.

Balances and amounts are integers of micro-credits (1 credit = 1,000,000 micros), the way ledgers
such as Stripe keep integer minor units. JSON carries them as decimal strings with at most 6 places.
Conversion and rounding happen here and nowhere else.
"""

from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

MICROS_PER_CREDIT = 1_000_000
SCALE = 6
# Largest amount accepted in one request: 1e12 credits keeps any sum far inside a signed 64-bit column.
MAX_AMOUNT_MICROS = 10**12 * MICROS_PER_CREDIT
# Charges are rounded once, when they are made, half away from zero (a commercial rounding).
CHARGE_ROUNDING = ROUND_HALF_UP

_QUANTUM = Decimal(1).scaleb(-SCALE)


class MoneyError(ValueError):
    """A value that is not an exact, acceptable amount of credits."""


def to_decimal(value: object, *, scale: int = SCALE) -> Decimal:
    """Parse a decimal string (or an int) exactly; floats are refused because they are not exact."""
    if isinstance(value, bool) or isinstance(value, float):
        raise MoneyError("send amounts as decimal strings, for example \"12.5\"")
    if isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text or len(text) > 40:
            raise MoneyError("not a decimal number")
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise MoneyError("not a decimal number") from None
    elif isinstance(value, Decimal):
        number = value
    else:
        raise MoneyError("send amounts as decimal strings, for example \"12.5\"")
    if not number.is_finite():
        raise MoneyError("must be a finite number")
    if number.as_tuple().exponent < -scale and number != number.quantize(Decimal(1).scaleb(-scale)):
        raise MoneyError(f"at most {scale} decimal places")
    return number


def parse_amount(value: object, *, allow_zero: bool = False) -> int:
    """A positive amount of credits (decimal string) → integer micro-credits."""
    number = to_decimal(value)
    if abs(number) > MAX_AMOUNT_MICROS // MICROS_PER_CREDIT:
        # Checked before scaling so an absurd magnitude can never be rounded by the decimal context.
        raise MoneyError("is too large")
    micros = int(number * MICROS_PER_CREDIT)
    if micros < 0 or (micros == 0 and not allow_zero):
        raise MoneyError("must be greater than zero" if not allow_zero else "must not be negative")
    if micros > MAX_AMOUNT_MICROS:
        raise MoneyError("is too large")
    return micros


def credits_to_micros(value: Decimal | int | str) -> int:
    """Exact conversion of a trusted value (settings, fixtures); refuses anything that would round."""
    number = Decimal(value) * MICROS_PER_CREDIT
    if number != number.to_integral_value():
        raise MoneyError(f"{value} has more than {SCALE} decimal places")
    return int(number)


def format_amount(micros: int) -> str:
    """Integer micro-credits → the shortest exact decimal string ("12.5", "-3", "0.000001")."""
    number = Decimal(micros).scaleb(-SCALE)
    text = format(number, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def charge_micros(quantity: Decimal, rate_credits: Decimal) -> int:
    """quantity × rate (credits per unit) → micro-credits, rounded once with CHARGE_ROUNDING."""
    exact = Decimal(quantity) * Decimal(rate_credits) * MICROS_PER_CREDIT
    return int(exact.quantize(Decimal(1), rounding=CHARGE_ROUNDING))


def quantize_quantity(value: Decimal, *, scale: int = SCALE) -> Decimal:
    """A measured quantity (often a float from a metrics store) → exact Decimal at the stored scale."""
    return Decimal(str(value)).quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_UP)


def micros_to_decimal(micros: int) -> Decimal:
    return Decimal(micros).scaleb(-SCALE).quantize(_QUANTUM)


# --- Currency (card payments) -------------------------------------------------------------------
# Minor units of a currency amount: cents for "usd", yen for "jpy" (Stripe's zero- and three-decimal lists).
_ZERO_DECIMAL_CURRENCIES = frozenset(
    "bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split()
)
_THREE_DECIMAL_CURRENCIES = frozenset("bhd jod kwd omr tnd".split())


def currency_minor_digits(currency: str) -> int:
    code = currency.lower()
    if code in _ZERO_DECIMAL_CURRENCIES:
        return 0
    if code in _THREE_DECIMAL_CURRENCIES:
        return 3
    return 2


def credits_to_currency_minor(micros: int, *, credits_per_unit: Decimal | str, currency: str) -> int | None:
    """Micro-credits → integer minor units of the currency, or None when that is not exact.

    Rounding rule: none. A top-up that does not convert into a whole number of minor units is
    refused rather than rounded, so the credits bought and the money charged always agree exactly.
    """
    rate = Decimal(credits_per_unit)
    if not rate.is_finite() or rate <= 0:
        raise MoneyError("credits per currency unit must be a positive number")
    minor = Decimal(micros) * (Decimal(10) ** currency_minor_digits(currency)) / (rate * MICROS_PER_CREDIT)
    if minor != minor.to_integral_value():
        return None
    return int(minor)


def format_currency_minor(minor: int, currency: str) -> str:
    """Minor units → the amount as a decimal string with the currency's places ("25.00", "1500")."""
    digits = currency_minor_digits(currency)
    return format(Decimal(minor).scaleb(-digits), "f") if digits else str(minor)


def proportional_micros(micros: int, part: int, whole: int) -> int:
    """micros × part / whole (a refunded share of a payment), rounded once with CHARGE_ROUNDING.

    part == whole gives exactly micros, so a full refund takes back exactly what was bought.
    """
    if whole <= 0 or part < 0:
        raise MoneyError("a share needs a positive whole and a part that is not negative")
    part = min(part, whole)
    exact = Decimal(micros) * part / whole
    return int(exact.quantize(Decimal(1), rounding=CHARGE_ROUNDING))
