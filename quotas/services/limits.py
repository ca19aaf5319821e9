"""Quota limits, the release of quota usage, and budgets."""

from datetime import datetime

from django.db import connection
from django.utils import timezone

from creditservice.lib.errors import ValidationFailed
from creditservice.lib.money import format_amount

from ..errors import BudgetExceeded
from ..models import Budget, Quota, ResourceType
from ..selectors import budget_spend, db_datetime

_QUOTA = Quota._meta.db_table


def quota_set_limit(*, project_id: int, resource_type: ResourceType, limit: int | None) -> None:
    """Set (or, with None, remove) the limit, in micro-units. A limit below what is used and reserved refuses new
    reservations; it never takes back what is already held."""
    Quota.objects.update_or_create(project_id=project_id, resource_type=resource_type, defaults={"limit": limit})


def quota_release_usage(*, project_id: int, resource_type: ResourceType, quantity: int) -> None:
    """A resource was deleted: used -= quantity (micro-units), never below zero (a repeated release cannot go negative)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {_QUOTA} SET used = CASE WHEN used > %s THEN used - %s ELSE 0 END, updated_at = %s "
            "WHERE project_id = %s AND resource_type_id = %s",
            [quantity, quantity, db_datetime(timezone.now()), project_id, resource_type.id],
        )


def budget_set(*, project_id: int, hard_limit: int | None, soft_limit: int | None) -> None:
    """Set the monthly budget; hard_limit None removes it. Lowering it below this month's spend refuses
    new reservations and leaves existing ones alone."""
    if hard_limit is None:
        Budget.objects.filter(project_id=project_id).delete()
        return
    if soft_limit is not None and soft_limit > hard_limit:
        raise ValidationFailed({"soft_limit": ["must not exceed hard_limit"]})
    Budget.objects.update_or_create(project_id=project_id, defaults={"hard_limit": hard_limit, "soft_limit": soft_limit})


def budget_refusal(*, project_id: int, wallet_id: int, amount: int, now: datetime, detail: str) -> BudgetExceeded | None:
    """The refusal when this month's spend, counting `amount` already (a pending hold or a charge written
    in the caller's transaction), is above the hard limit; None within it or without a budget.

    Call under the wallet row lock, taken earlier in the same transaction: every change of a project's
    spend (reserve, commit, usage charge, gateway charge) takes that lock, so the sum cannot go stale
    before the caller commits."""
    hard_limit = Budget.objects.filter(project_id=project_id).values_list("hard_limit", flat=True).first()
    if hard_limit is None:
        return None
    charged, pending = budget_spend(project_id=project_id, wallet_id=wallet_id, now=now)
    return budget_exceeded(hard_limit=hard_limit, charged=charged, pending=pending, amount=amount, detail=detail)


def budget_exceeded(*, hard_limit: int, charged: int, pending: int, amount: int, detail: str) -> BudgetExceeded | None:
    """The refusal when charged + pending (micro-credits, as budget_spend() reads them, counting `amount`
    already) is above the hard limit; None within it. The rule of every budget check, also the one the
    gateway's charge function applies in SQL (charged + pending > hard limit, gateway/fastpath.py)."""
    if charged + pending <= hard_limit:
        return None
    spent = charged + pending - amount
    return BudgetExceeded(detail, limit=format_amount(hard_limit), spent=format_amount(spent),
                          requested=format_amount(amount), available=format_amount(max(hard_limit - spent, 0)))
