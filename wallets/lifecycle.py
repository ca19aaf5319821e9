"""Staff suspensions as the wallets app asks for them (its admin's "suspend" and "lift suspension").

The transition itself belongs to billing's lifecycle, which records the ProjectStatusChange and sends
the webhook; billing registers it here at start-up, so this app never imports billing.
"""

from collections.abc import Callable
from dataclasses import dataclass

from django.core.exceptions import ImproperlyConfigured


@dataclass(frozen=True)
class StaffSuspension:
    # suspend(project_id=, reason=, actor=) -> bool (False: already suspended by staff)
    suspend: Callable[..., bool]
    # lift(project_id=, actor=) -> bool (False: not suspended by staff)
    lift: Callable[..., bool]


_registered: list[StaffSuspension] = []


def register_staff_suspension(*, suspend: Callable[..., bool], lift: Callable[..., bool]) -> None:
    _registered[:] = [StaffSuspension(suspend=suspend, lift=lift)]


def staff_suspension() -> StaffSuspension:
    if not _registered:
        raise ImproperlyConfigured("no project lifecycle is installed: add the billing app to INSTALLED_APPS")
    return _registered[0]
