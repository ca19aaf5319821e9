"""Writes of admission control. Lock order and the hot path are described in reservations.py."""

from .limits import budget_exceeded, budget_refusal, budget_set, quota_release_usage, quota_set_limit
from .reservations import (
    ReservationResult,
    hold_for_min_runtime,
    reservation_create,
    reservation_create_by_slug,
    reservation_ttl,
)
from .settlement import reservation_commit, reservation_expire, reservation_release, reservations_expire

__all__ = [
    "ReservationResult", "budget_exceeded", "budget_refusal", "budget_set", "hold_for_min_runtime", "quota_release_usage", "quota_set_limit",
    "reservation_commit", "reservation_create", "reservation_create_by_slug", "reservation_expire",
    "reservation_release", "reservation_ttl", "reservations_expire",
]
