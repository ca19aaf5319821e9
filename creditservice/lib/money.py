"""Money, quantities and rates: their types, scales, the one input grammar and the one rounding rule.

Balances and amounts are integers of micro-credits (1 credit = 1,000,000 micros), the way ledgers
such as Stripe keep integer minor units. Resource quantities are integers of micro-units at the
same scale (1 vm = 1,000,000), and rates (credits per unit: a price, a charge's rate) are integers
of pico-credits (1 credit = 10^12), so every backend stores and adds them exactly: SQLite has no
exact decimal type (its "decimal" columns hold floats). JSON carries all three as decimal strings.
Parsing, conversion, formatting and rounding happen here and nowhere else.
"""

import re
from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal

MICROS_PER_CREDIT = 1_000_000
SCALE = 6
# Largest amount accepted in one request: 1e12 credits keeps any sum far inside a signed 64-bit column.
MAX_AMOUNT_MICROS = 10**12 * MICROS_PER_CREDIT
# Micro-credits (4 × 10^12 credits): no transfer or batch takes a wallet's balance above it, nor below
# its negative (wallets/ledger refuses them). A commit of a hold is not bounded (see wallets/ledger), so
# a balance can reach MIN_BALANCE_MICROS = -2 × MAX_BALANCE_MICROS at worst, still inside a bigint. The
# database's CHECKs on the wallet hold it to [MIN_BALANCE_MICROS, MAX_BALANCE_MICROS].
MAX_BALANCE_MICROS = 4 * MAX_AMOUNT_MICROS
MIN_BALANCE_MICROS = -2 * MAX_BALANCE_MICROS
# Charges are rounded once, when they are made, half away from zero (a commercial rounding).
CHARGE_ROUNDING = ROUND_HALF_UP

# Quantities share the scale of money: 6 places, integer micro-units in the database.
MICROS_PER_UNIT = 1_000_000
# Largest quantity accepted in one request or event: 10^12 units (10^18 micro-units), so a sum of a
# few of them (used + reserved + requested) stays inside a signed 64-bit column (9.2 × 10^18).
MAX_QUANTITY_MICROS = 10**12 * MICROS_PER_UNIT

# Rates: credits per unit at 12 places (a per-second price needs more places than a balance).
RATE_SCALE = 12
PICOS_PER_CREDIT = 10**RATE_SCALE
# Largest rate per billing unit: 10^6 credits (10^18 picos, inside a signed 64-bit column). A price per
# unit-second is at most this / 3600, so its rate per unit-hour obeys the same bound.
MAX_RATE_PICOS = 10**6 * PICOS_PER_CREDIT

# The one grammar of every amount and quantity a caller sends: a JSON string of ASCII digits with
# an optional point and 1 to 6 decimals. No sign, exponent, spaces, "5." or ".5": Decimal() and
# str.isdigit() would also take "1e2", " 5 ", "+5" and "٣" (an Arabic-Indic digit); [0-9] is ASCII only.
_DECIMAL_FORM = re.compile(r"\A[0-9]+(?:\.[0-9]{1,6})?\Z")
# The same, as the OpenAPI schema states it for every amount and quantity field.
DECIMAL_FORM_PATTERN = r"^[0-9]+(\.[0-9]{1,6})?$"
DECIMAL_FORM_MESSAGE = 'must be a decimal string such as "12.5" (ASCII digits, at most 6 decimal places)'
# Staff type prices with up to 12 places, in the same form.
_RATE_FORM = re.compile(r"\A[0-9]+(?:\.[0-9]{1,12})?\Z")
RATE_FORM_MESSAGE = 'must be a decimal such as "0.04" (ASCII digits, at most 12 decimal places)'
# More integer digits than any bound here has (without leading zeros): refused before int() reads it.
_MAX_WHOLE_DIGITS = 19


class MoneyError(ValueError):
    """A value that is not an exact, acceptable amount, quantity or rate."""


def _parse_fixed(value: object, *, form: re.Pattern, message: str, places: int, allow_zero: bool,
                 maximum: int) -> int:
    """The grammar check and the exact conversion to an integer at `places` decimals."""
    if not isinstance(value, str) or not form.match(value):
        raise MoneyError(message)
    whole, _, fraction = value.partition(".")
    whole = whole.lstrip("0") or "0"
    if len(whole) > _MAX_WHOLE_DIGITS:
        raise MoneyError(f"must be at most {_format_fixed(maximum, places)}")
    number = int(whole) * 10**places + int(fraction.ljust(places, "0") or "0")
    if number == 0 and not allow_zero:
        raise MoneyError("must be greater than zero")
    if number > maximum:
        raise MoneyError(f"must be at most {_format_fixed(maximum, places)}")
    return number


def parse_micros(value: object, *, allow_zero: bool = False, maximum: int) -> int:
    """A decimal string in the one grammar → integer millionths; anything else raises MoneyError."""
    return _parse_fixed(value, form=_DECIMAL_FORM, message=DECIMAL_FORM_MESSAGE, places=SCALE,
                        allow_zero=allow_zero, maximum=maximum)


def parse_amount(value: object, *, allow_zero: bool = False) -> int:
    """A positive amount of credits (decimal string) → integer micro-credits."""
    return parse_micros(value, allow_zero=allow_zero, maximum=MAX_AMOUNT_MICROS)


def parse_rate(value: object, *, maximum: int = MAX_RATE_PICOS) -> int:
    """A rate typed by staff ("0.04", zero allowed) → integer pico-credits per unit."""
    return _parse_fixed(value, form=_RATE_FORM, message=RATE_FORM_MESSAGE, places=RATE_SCALE, allow_zero=True,
                        maximum=maximum)


def credits_to_micros(value: Decimal | int | str) -> int:
    """Exact conversion of a trusted value (settings, fixtures); refuses anything that would round."""
    number = Decimal(value) * MICROS_PER_CREDIT
    if number != number.to_integral_value():
        raise MoneyError(f"{value} has more than {SCALE} decimal places")
    return int(number)


def credits_to_picos(value: Decimal | int | str) -> int:
    """Exact conversion of a trusted rate (shipped prices, fixtures); refuses anything that would round."""
    number = Decimal(value) * PICOS_PER_CREDIT
    if number != number.to_integral_value():
        raise MoneyError(f"{value} has more than {RATE_SCALE} decimal places")
    return int(number)


def _format_fixed(number: int, places: int) -> str:
    """An integer at `places` decimals → the shortest exact decimal string ("12.5", "-3", "0.000001")."""
    sign = "-" if number < 0 else ""
    whole, fraction = divmod(abs(number), 10**places)
    text = f"{whole}.{fraction:0{places}d}".rstrip("0").rstrip(".")
    return sign + text if text != "0" else "0"


def format_amount(micros: int) -> str:
    """Integer micro-credits → the shortest exact decimal string ("12.5", "-3", "0.000001")."""
    return _format_fixed(int(micros), SCALE)


def format_micros(micros: int | None) -> str | None:
    """Integer micro-units of a quantity → the shortest exact decimal string; None stays None (no limit)."""
    return None if micros is None else _format_fixed(int(micros), SCALE)


def format_micros_sql(expression: str) -> str:
    """PostgreSQL: the text format_micros() gives for the integer SQL expression (a reason written by a
    database function); tested equal to it."""
    return f"trim_scale(({expression})::numeric / {10**SCALE})::text"


def format_rate(picos: int) -> str:
    """Integer pico-credits per unit → the shortest exact decimal string ("0.04", "0.000011111111")."""
    return _format_fixed(int(picos), RATE_SCALE)


def _divide_half_up(numerator: int, denominator: int) -> int:
    """numerator / denominator (> 0) rounded once with CHARGE_ROUNDING: half away from zero."""
    quotient, remainder = divmod(abs(numerator), denominator)
    if 2 * remainder >= denominator:
        quotient += 1
    return quotient if numerator >= 0 else -quotient


def charge_micros(quantity_micros: int, rate_picos: int, *, rate_per: int = 1) -> int:
    """quantity (micro-units) × rate (pico-credits per `rate_per` units) → micro-credits, rounded once.

    micro-units × pico-credits = 10^-18 credits; one division by 10^12 (× rate_per) gives micro-credits.
    Integers throughout, so the result is the same on every backend and in every process.
    """
    return _divide_half_up(quantity_micros * rate_picos, PICOS_PER_CREDIT * rate_per)


def weighted_rate_picos(parts: list[tuple[int, int]]) -> int:
    """The mean of rates (picos) weighted by integer shares (e.g. microseconds of a window), rounded once."""
    total = sum(weight for _, weight in parts)
    if total <= 0:
        raise MoneyError("a weighted rate needs a positive total weight")
    return _divide_half_up(sum(rate * weight for rate, weight in parts), total)


def measured_to_micros(value: Decimal) -> int:
    """A measured quantity (exact Decimal of what a metrics store printed, often float noise) →
    micro-units, rounded once. Outside 0..MAX_QUANTITY_MICROS it raises MoneyError, checked before
    scaling so an absurd magnitude ("1e400") can never meet the decimal context's precision."""
    if not value.is_finite() or value < 0:
        raise MoneyError("must be a finite number, zero or more")
    if value > Decimal(MAX_QUANTITY_MICROS) / MICROS_PER_UNIT:
        raise MoneyError(f"must be at most {format_micros(MAX_QUANTITY_MICROS)}")
    return int((value * MICROS_PER_UNIT).quantize(Decimal(1), rounding=CHARGE_ROUNDING))


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


# How far above the exact amount currency_minor_covering() looks for a price that buys whole micro-credits.
_COVERING_SEARCH = 1000


def currency_minor_covering(micros: int, *, credits_per_unit: Decimal | str, currency: str) -> tuple[int, int] | None:
    """The fewest whole minor units of the currency that buy at least `micros`, and the micro-credits they
    buy exactly: (minor, credits). Rounding rule: up, to the next whole minor unit, so an automatic top-up
    fills at least the gap and the credits bought and the money charged still agree exactly. None when no
    price within _COVERING_SEARCH minor units above buys a whole number of micro-credits."""
    rate = Decimal(credits_per_unit)
    if not rate.is_finite() or rate <= 0:
        raise MoneyError("credits per currency unit must be a positive number")
    micros_per_minor = rate * MICROS_PER_CREDIT / (Decimal(10) ** currency_minor_digits(currency))
    minor = int((Decimal(micros) / micros_per_minor).to_integral_value(rounding=ROUND_CEILING))
    for candidate in range(max(minor, 1), max(minor, 1) + _COVERING_SEARCH):
        bought = candidate * micros_per_minor
        if bought == bought.to_integral_value():
            return candidate, int(bought)
    return None


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
