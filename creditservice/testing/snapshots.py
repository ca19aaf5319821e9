"""What a refused request must not change: the rows and sums of every table that holds money or usage."""

from django.db.models import Count, Sum

from billing.models import Charge, OwedCharge
from metering.models import UsageEvent, UsageRecord
from payments.models import CheckoutSession
from quotas.models import Budget, Quota, Reservation
from wallets.models import Account, IdempotencyRecord, Project, Transfer

_COUNTED = (Project, Transfer, Reservation, Charge, OwedCharge, UsageRecord, UsageEvent, CheckoutSession,
            IdempotencyRecord, Budget)


def money_snapshot() -> dict:
    """Row counts of the money tables, and the sums that hold balances, holds and quota usage."""
    snapshot = {model.__name__: model.objects.count() for model in _COUNTED}
    snapshot["accounts"] = Account.objects.aggregate(rows=Count("id"), balance=Sum("balance"), reserved=Sum("reserved"))
    snapshot["quotas"] = Quota.objects.aggregate(rows=Count("id"), limit=Sum("limit"), used=Sum("used"),
                                                 reserved=Sum("reserved"))
    snapshot["budgets"] = Budget.objects.aggregate(hard=Sum("hard_limit"), soft=Sum("soft_limit"))
    return snapshot
