from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from creditservice.lib.money import MoneyError, charge_micros, format_amount, parse_amount, quantize_quantity


@pytest.mark.parametrize("text,micros", [
    ("12.5", 12_500_000), ("0.000001", 1), ("1", 1_000_000), (7, 7_000_000), ("12.500000000", 12_500_000),
    (" 3 ", 3_000_000), ("1e3", 1_000_000_000),
])
def test_decimal_strings_parse_exactly(text, micros):
    assert parse_amount(text) == micros


@pytest.mark.parametrize("bad", [
    "0", "-1", "0.0000001", "0.1000000000001", "NaN", "Infinity", "-Infinity", "abc", "", None, 1.5, True,
    "1e30", "99999999999999999999999999", [], {},
])
def test_inexact_or_absurd_amounts_are_refused(bad):
    with pytest.raises(MoneyError):
        parse_amount(bad)


@pytest.mark.parametrize("micros,text", [(12_500_000, "12.5"), (1, "0.000001"), (-3_000_000, "-3"), (0, "0"),
                                         (10**18, "1000000000000")])
def test_amounts_are_shown_as_short_exact_decimals(micros, text):
    assert format_amount(micros) == text


@given(st.integers(min_value=1, max_value=10**18))
def test_format_then_parse_round_trips(micros):
    assert parse_amount(format_amount(micros)) == micros


def test_a_charge_is_rounded_once_half_up():
    # 3 units at 0.0000005 credits = 0.0000015 credits = 1.5 micros -> 2 micros.
    assert charge_micros(Decimal(3), Decimal("0.0000005")) == 2
    assert charge_micros(Decimal("0.5"), Decimal("0.000001")) == 1


def test_float_noise_from_a_metrics_store_is_quantized_to_the_scale():
    assert quantize_quantity(900.0000000000001) == Decimal("900.000000")
