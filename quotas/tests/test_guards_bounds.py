"""The database's CHECKs hold quota counters and limits, holds and budgets within their bounds, on
both backends: a raw UPDATE past a bound is refused."""

from datetime import timedelta

import pytest
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from creditservice.lib.money import MAX_AMOUNT_MICROS, MAX_QUANTITY_MICROS
from quotas.models import Budget, Quota, QuotaDefault, Reservation, ResourceType
from wallets.tests.factories import ProjectFactory

pytestmark = pytest.mark.django_db


def _update(table: str, row_id: int, **values: int) -> None:
    assignments = ", ".join(f'"{column}" = %s' for column in values)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET {assignments} WHERE id = %s", [*values.values(), row_id])


def _refused(constraint: str, table: str, row_id: int, **values: int) -> None:
    with pytest.raises(IntegrityError) as refused, transaction.atomic():
        _update(table, row_id, **values)
    assert constraint in str(refused.value)


@pytest.fixture
def vm(db) -> ResourceType:
    return ResourceType.objects.get(code="vm")


def test_quota_counters_and_limit_past_their_bounds_are_refused(vm):
    quota = Quota.objects.create(project=ProjectFactory(slug="acme"), resource_type=vm)
    table, bound = Quota._meta.db_table, MAX_QUANTITY_MICROS
    _refused("quota_used_and_reserved_within_bound", table, quota.id, used=bound + 1)
    _refused("quota_used_and_reserved_within_bound", table, quota.id, reserved=bound + 1)
    _refused("quota_used_plus_reserved_within_bound", table, quota.id, used=bound // 2 + 1, reserved=bound // 2)
    _refused("quota_used_not_negative", table, quota.id, used=-1)
    _refused("quota_reserved_not_negative", table, quota.id, reserved=-1)
    _refused("quota_limit_within_bound", table, quota.id, limit=bound + 1)
    _update(table, quota.id, used=bound // 2, reserved=bound // 2, limit=bound)


def test_a_default_limit_past_the_bound_is_refused(vm):
    default = QuotaDefault.objects.create(resource_type=vm, limit=1)
    _refused("quota_default_limit_within_bound", QuotaDefault._meta.db_table, default.id, limit=MAX_QUANTITY_MICROS + 1)


def test_a_hold_past_one_amount_or_one_quantity_is_refused(vm):
    now = timezone.now()
    hold = Reservation.objects.create(project=ProjectFactory(slug="acme"), resource_type=vm, quantity=1, amount=1,
                                      expires_at=now + timedelta(hours=1), idempotency_scope="test", idempotency_key="k",
                                      request_fingerprint="f", created_at=now)
    table = Reservation._meta.db_table
    _refused("reservation_amount_and_quantity_within_bounds", table, hold.id, amount=MAX_AMOUNT_MICROS + 1)
    _refused("reservation_amount_and_quantity_within_bounds", table, hold.id, quantity=MAX_QUANTITY_MICROS + 1)
    _update(table, hold.id, amount=MAX_AMOUNT_MICROS, quantity=MAX_QUANTITY_MICROS)


def test_a_budget_past_one_amount_is_refused():
    budget = Budget.objects.create(project=ProjectFactory(slug="acme"), hard_limit=10)
    _refused("budget_hard_limit_within_bound", Budget._meta.db_table, budget.id, hard_limit=MAX_AMOUNT_MICROS + 1)
    _refused("budget_soft_limit_within_hard", Budget._meta.db_table, budget.id, soft_limit=11)
