"""Prices: versions that never rewrite history, windows split at price changes, units checked."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import IntegrityError, transaction

from creditservice.lib.errors import ValidationFailed
from metering import pricing, services
from metering.models import Price
from metering.pricing import QuantityUnit, UnitMismatch
from metering.tests.factories import picos, resource_type, units

T0 = datetime(2026, 11, 22, 0, 0, tzinfo=UTC)


def price(per: str, unit_price: str, code: str = "vm") -> Price:
    return Price(resource_type=resource_type(code), per=per, unit_price=picos(unit_price), effective_from=T0)


def test_shipped_resource_types_have_a_price_in_force(db):
    for code in ("vm", "storage_gib", "network_egress_gib"):
        assert pricing.price_in_force(resource_type(code), T0) is not None
    assert pricing.price_in_force(resource_type("network_egress_gib"), T0).per == Price.Per.UNIT


def test_hours_priced_per_hour_multiply_directly(db):
    assert pricing.charge_for(units("2.5"), QuantityUnit.UNIT_HOURS, price(Price.Per.UNIT_HOUR, "0.04")) == 100_000


def test_hours_priced_per_second_are_converted_with_3600_not_charged_3600_times_too_little(db):
    # 1 vm-hour at 0.00001 credits per vm-second is 0.036 credits, not 0.00001.
    per_second = price(Price.Per.UNIT_SECOND, "0.00001")
    assert pricing.charge_for(units("1"), QuantityUnit.UNIT_HOURS, per_second) == 36_000
    per_hour = price(Price.Per.UNIT_HOUR, "0.036")
    assert pricing.charge_for(units("1"), QuantityUnit.UNIT_HOURS, per_hour) == 36_000


def test_seconds_priced_per_hour_are_divided_by_3600(db):
    assert pricing.charge_for(units("900"), QuantityUnit.UNIT_SECONDS, price(Price.Per.UNIT_HOUR, "0.04")) == 10_000


def test_a_charge_is_rounded_once_half_up(db):
    # 0.0000005 credits is exactly half a micro-credit: rounded up once, at the end.
    assert pricing.charge_for(units("0.000005"), QuantityUnit.UNIT_HOURS, price(Price.Per.UNIT_HOUR, "0.1")) == 1
    assert pricing.charge_for(units("0.000004"), QuantityUnit.UNIT_HOURS, price(Price.Per.UNIT_HOUR, "0.1")) == 0


def test_a_per_unit_price_on_a_duration_is_refused(db):
    with pytest.raises(UnitMismatch):
        pricing.charge_for(units("1"), QuantityUnit.UNIT_HOURS, price(Price.Per.UNIT, "0.04"))


def test_a_time_price_on_a_count_is_refused(db):
    for per in (Price.Per.UNIT_HOUR, Price.Per.UNIT_SECOND):
        with pytest.raises(UnitMismatch):
            pricing.charge_for(units("10"), QuantityUnit.UNITS, price(per, "0.01", code="network_egress_gib"))


def test_counts_are_charged_per_unit(db):
    egress = price(Price.Per.UNIT, "0.01", code="network_egress_gib")
    assert pricing.charge_for(units("12.5"), QuantityUnit.UNITS, egress) == 125_000
    assert pricing.charge_for_usage(units("12.5"), resource_type("network_egress_gib"), egress) == 125_000


def test_a_price_of_another_type_is_refused(db):
    with pytest.raises(UnitMismatch):
        pricing.charge_for_usage(units("1"), resource_type("vcpu"), price(Price.Per.UNIT_HOUR, "1"))


def test_a_new_version_closes_the_previous_one(db):
    vm = resource_type("vm")
    shipped = pricing.price_in_force(vm, T0)
    new = services.price_version_add(resource_type=vm, unit_price=picos("0.05"), per=Price.Per.UNIT_HOUR,
                                     effective_from=T0 + timedelta(minutes=30), actor="test")
    shipped.refresh_from_db()
    assert shipped.effective_to == new.effective_from
    assert shipped.unit_price == picos("0.04")  # the old rate is kept as it was
    assert pricing.price_in_force(vm, T0 + timedelta(minutes=29)) == shipped
    assert pricing.price_in_force(vm, T0 + timedelta(minutes=30)) == new


def test_a_window_spanning_a_price_change_is_split_at_the_boundary(db):
    vm = resource_type("vm")
    services.price_version_add(resource_type=vm, unit_price=picos("0.05"), per=Price.Per.UNIT_HOUR,
                               effective_from=T0 + timedelta(minutes=20))
    segments = pricing.price_segments(vm, T0, T0 + timedelta(hours=1))
    assert [(s.start, s.end, s.price.unit_price) for s in segments] == [
        (T0, T0 + timedelta(minutes=20), picos("0.04")),
        (T0 + timedelta(minutes=20), T0 + timedelta(hours=1), picos("0.05")),
    ]


def test_a_window_inside_one_version_is_one_segment(db):
    segments = pricing.price_segments(resource_type("vm"), T0, T0 + timedelta(hours=1))
    assert len(segments) == 1 and segments[0].start == T0 and segments[0].end == T0 + timedelta(hours=1)


def test_a_window_before_any_price_is_refused_not_charged_as_zero(db):
    with pytest.raises(pricing.PriceMissing):
        pricing.price_segments(resource_type("vm"), datetime(2019, 1, 1, tzinfo=UTC), datetime(2020, 1, 1, 1, tzinfo=UTC))


def test_a_version_starting_before_the_latest_is_refused(db):
    vm = resource_type("vm")
    services.price_version_add(resource_type=vm, unit_price=picos("0.05"), per=Price.Per.UNIT_HOUR,
                               effective_from=T0)
    with pytest.raises(services.PriceHistoryProtected):
        services.price_version_add(resource_type=vm, unit_price=picos("0.01"), per=Price.Per.UNIT_HOUR,
                                   effective_from=T0 - timedelta(days=1))
    assert Price.objects.filter(resource_type=vm).count() == 2


def test_a_price_whose_unit_does_not_fit_the_type_is_refused(db):
    with pytest.raises(ValidationFailed):
        services.price_version_add(resource_type=resource_type("vm"), unit_price=picos("1"), per=Price.Per.UNIT)
    with pytest.raises(ValidationFailed):
        services.price_version_add(resource_type=resource_type("network_egress_gib"), unit_price=picos("1"),
                                   per=Price.Per.UNIT_HOUR)


def test_the_database_allows_one_open_version_per_type(db):
    with pytest.raises(IntegrityError), transaction.atomic():
        Price.objects.create(resource_type=resource_type("vm"), unit_price=picos("9"), per=Price.Per.UNIT_HOUR,
                             effective_from=T0)


def test_the_database_refuses_a_negative_price(db):
    vm = resource_type("vm")
    with pytest.raises(IntegrityError), transaction.atomic():
        Price.objects.create(resource_type=vm, unit_price=picos("-1"), per=Price.Per.UNIT_HOUR,
                             effective_from=datetime(2010, 1, 1, tzinfo=UTC), effective_to=datetime(2011, 1, 1, tzinfo=UTC))


def test_shipping_the_default_prices_again_stores_them_in_pico_credits(db):
    import importlib

    from django.apps import apps

    Price.objects.all().delete()
    importlib.import_module("metering.migrations.0002_shipped_prices").ship(apps, None)
    assert Price.objects.get(resource_type__code="vm").unit_price == picos("0.04")
    assert Price.objects.get(resource_type__code="object_storage_gib").unit_price == picos("0.00003")
