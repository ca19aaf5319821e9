"""Admission's counters (creditservice/lib/metrics.py), counted in one place for reserve and commit
(quotas/services).

The label children are resolved once, here: on the hot path a count is one dictionary lookup and an
increment. A decision that wrote something counts once its transaction committed (on_commit runs at
once outside a transaction); a refusal wrote nothing and counts when it is answered.
"""

from django.db import transaction

from creditservice.lib.metrics import ADMISSION_DECISIONS, RESERVATIONS

# "allowed", and every refusal code admission answers with: quotas/errors.py and InsufficientCredits
# (creditservice/lib/errors.py); the check endpoint's `reason` uses the same codes.
ADMISSION_RESULTS = ("allowed", "insufficient_credits", "budget_exceeded", "quota_exceeded", "project_suspended")
RESERVATION_OUTCOMES = ("created", "committed", "released", "expired")

_DECISIONS = {result: ADMISSION_DECISIONS.labels(result=result) for result in ADMISSION_RESULTS}
_OUTCOMES = {outcome: RESERVATIONS.labels(outcome=outcome) for outcome in RESERVATION_OUTCOMES}


def admission_checked(reason: str | None) -> None:
    """The check endpoint answered: allowed (reason None) or refused for `reason`."""
    _DECISIONS[reason or "allowed"].inc()


def admission_refused(code: str) -> None:
    """A reservation was refused with the error `code` (its transaction rolled back)."""
    _DECISIONS[code].inc()


def reservation_created() -> None:
    """A reservation was admitted and its holds written: an allowed decision and a created reservation."""
    transaction.on_commit(_count_created)


def reservation_ended(outcome: str) -> None:
    """A pending reservation became committed, released or expired (not a repeated, idempotent call)."""
    transaction.on_commit(_OUTCOMES[outcome].inc)


def _count_created() -> None:
    _DECISIONS["allowed"].inc()
    _OUTCOMES["created"].inc()
