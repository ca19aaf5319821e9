"""Whole transactions retried when the database gave up on them for a reason that a retry removes.

PostgreSQL ends a transaction it chose as the victim of a deadlock (SQLSTATE 40P01), one that could not
be serialized (40001) and one whose lock wait hit a lock timeout (55P03). Nothing of it was committed,
and running the same work again from the start, once the other transaction has moved on, succeeds: so
the services that own a transaction retry it here (a few times, with a short jittered pause) instead
of answering 503. Lock order (quotas/services/reservations.py) keeps our own transactions from
deadlocking each other; this covers whatever else takes the same rows (staff SQL, a migration, a job).

Only a whole transaction can be retried: called inside an outer atomic block, the work runs once and
the error goes to the outermost owner. SQLite's "database is locked" is not retried: it comes after
the busy timeout, which already waited for the lock. Anything still failing becomes a 503
database_unavailable (creditservice/lib/errors.py).
"""

import functools
import logging
import random
import threading
import time
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from django.db import OperationalError, connection

log = logging.getLogger(__name__)

RETRIED_SQLSTATES = frozenset({"40P01", "40001", "55P03"})
ATTEMPTS = 4  # the first and three retries
PAUSE_SECONDS = 0.02  # doubled each retry, with jitter: about 0.15 s in all

P = ParamSpec("P")
T = TypeVar("T")

# A decorated function called by another (reservation_create_by_slug → reservation_create) runs once:
# the outermost retries the whole, so the attempts do not multiply.
_active = threading.local()


def is_retryable(exc: BaseException) -> bool:
    """A deadlock victim, a serialization failure or a lock timeout (the driver's error is the cause)."""
    if not isinstance(exc, OperationalError):
        return False
    cause = exc.__cause__
    return getattr(cause, "sqlstate", None) in RETRIED_SQLSTATES


def retry_transaction(function: Callable[P, T]) -> Callable[P, T]:
    """Decorate a service function that opens its own transaction(s) and is safe to run again from the
    start after a rolled-back attempt (every effect keyed or compare-and-set)."""

    @functools.wraps(function)
    def retrying(*args: P.args, **kwargs: P.kwargs) -> T:
        if connection.in_atomic_block or getattr(_active, "retrying", False):
            return function(*args, **kwargs)
        _active.retrying = True
        try:
            for attempt in range(1, ATTEMPTS + 1):
                try:
                    return function(*args, **kwargs)
                except OperationalError as exc:
                    if attempt == ATTEMPTS or not is_retryable(exc):
                        raise
                    log.warning("%s: %s (SQLSTATE %s); retrying the transaction (attempt %d of %d)",
                                function.__qualname__, type(exc.__cause__).__name__, exc.__cause__.sqlstate,
                                attempt + 1, ATTEMPTS)
                    time.sleep(PAUSE_SECONDS * 2 ** (attempt - 1) * random.uniform(0.5, 1.5))
            raise AssertionError("unreachable")
        finally:
            _active.retrying = False

    return retrying
