from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from creditservice.lib.money import (
    DECIMAL_FORM_MESSAGE,
    MAX_AMOUNT_MICROS,
    MoneyError,
    charge_micros,
    credits_to_picos,
    format_amount,
    format_rate,
    measured_to_micros,
    parse_amount,
    parse_rate,
    weighted_rate_picos,
)
from quotas.quantities import MAX_QUANTITY_MICROS, format_quantity, parse_quantity


@pytest.mark.parametrize("text,micros", [
    ("12.5", 12_500_000), ("0.000001", 1), ("1", 1_000_000), ("12.500000", 12_500_000), ("007", 7_000_000),
    ("1000000000000", MAX_AMOUNT_MICROS),
])
def test_decimal_strings_parse_exactly(text, micros):
    assert parse_amount(text) == micros


# The one grammar: a JSON string of ASCII digits, an optional point and 1 to 6 decimals.
NOT_THE_GRAMMAR = [
    5, 7, 1.5, True, None, [], {}, "1e2", "1E2", " 5 ", "5 ", "\t5", "5\n", "+5", "-5", "-0", "", ".", "5.", ".5",
    "NaN", "nan", "Infinity", "-Infinity", "inf", "\u0663", "1\u0663", "\uff15", "1,5", "1_000", "0x10", "1.2.3",
    "0.0000001", "12.500000000",
]


@pytest.mark.parametrize("bad", NOT_THE_GRAMMAR)
def test_anything_but_the_one_grammar_is_refused_with_the_expected_form(bad):
    for parse in (parse_amount, parse_quantity):
        with pytest.raises(MoneyError) as refused:
            parse(bad)
        assert str(refused.value) == DECIMAL_FORM_MESSAGE


@pytest.mark.parametrize("bad", ["0", "0.0", "000"])
def test_zero_is_refused_unless_allowed(bad):
    with pytest.raises(MoneyError, match="greater than zero"):
        parse_amount(bad)
    assert parse_amount(bad, allow_zero=True) == 0
    assert parse_quantity(bad, allow_zero=True) == 0


@pytest.mark.parametrize("bad", ["1000000000000.000001", "99999999999999999999999999", "1" + "0" * 400])
def test_amounts_beyond_the_bound_are_refused(bad):
    with pytest.raises(MoneyError, match="at most 1000000000000"):
        parse_amount(bad)


def test_quantities_have_the_same_grammar_and_their_own_bound():
    assert parse_quantity("0.3") == 300_000
    assert parse_quantity("1000000000000") == MAX_QUANTITY_MICROS
    with pytest.raises(MoneyError, match="at most"):
        parse_quantity("1000000000000.000001")


@pytest.mark.parametrize("micros,text", [(12_500_000, "12.5"), (1, "0.000001"), (-3_000_000, "-3"), (0, "0"),
                                         (10**18, "1000000000000"), (100_000_000, "100"), (-500_000, "-0.5")])
def test_amounts_are_shown_as_short_exact_decimals(micros, text):
    assert format_amount(micros) == text
    assert format_quantity(micros) == text


@given(st.integers(min_value=1, max_value=10**18))
def test_format_then_parse_round_trips(micros):
    assert parse_amount(format_amount(micros)) == micros
    assert parse_quantity(format_quantity(micros)) == micros


def test_a_charge_is_rounded_once_half_up():
    # 3 units at 0.0000005 credits = 0.0000015 credits = 1.5 micros -> 2 micros.
    assert charge_micros(3_000_000, credits_to_picos("0.0000005")) == 2
    assert charge_micros(500_000, credits_to_picos("0.000001")) == 1
    # Half away from zero for a credit-back too.
    assert charge_micros(-3_000_000, credits_to_picos("0.0000005")) == -2


def test_fractional_quantities_add_up_exactly_in_a_charge():
    # 0.1 + 0.2 vm-hours at 0.04: 0.012 credits exactly, not 0.30000000000000004 x 0.04.
    assert charge_micros(parse_quantity("0.1") + parse_quantity("0.2"), credits_to_picos("0.04")) == 12_000


def test_a_rate_per_hour_divides_the_product_not_the_quantity():
    # 900 unit-seconds at 0.04 per unit-hour = 0.01 credits.
    assert charge_micros(900_000_000, credits_to_picos("0.04"), rate_per=3600) == 10_000


def test_a_weighted_rate_is_rounded_once_to_twelve_places():
    # 20 minutes at 0.04 and 40 at 0.01: 0.02 exactly; thirds of 0.01 round half up at the 12th place.
    assert weighted_rate_picos([(credits_to_picos("0.04"), 20), (credits_to_picos("0.01"), 40)]) == credits_to_picos("0.02")
    assert weighted_rate_picos([(credits_to_picos("0.01"), 1), (0, 2)]) == 3_333_333_333
    assert weighted_rate_picos([(credits_to_picos("0.02"), 1), (0, 2)]) == 6_666_666_667


def test_rates_parse_and_show_with_twelve_places():
    assert parse_rate("0.04") == 40_000_000_000
    assert parse_rate("0.000011111111") == 11_111_111
    assert format_rate(11_111_111) == "0.000011111111"
    for bad in ("0.0000000000001", "1e-3", " 1", "-1", 1):
        with pytest.raises(MoneyError):
            parse_rate(bad)


def test_float_noise_from_a_metrics_store_is_rounded_once_to_micro_units():
    assert measured_to_micros(Decimal("900.0000000000001")) == 900_000_000
    assert measured_to_micros(Decimal("0.0000005")) == 1


@pytest.mark.parametrize("bad", ["1e20", "1" + "0" * 60, "-1", "NaN", "Infinity", "1e400"])
def test_measured_quantities_outside_the_bound_are_refused(bad):
    with pytest.raises(MoneyError):
        measured_to_micros(Decimal(bad))
