"""Small helpers for the admission tests."""

from django.core.management import call_command

from quotas.models import Quota, Reservation, ResourceType
from quotas.quantities import parse_quantity
from wallets.models import Project

RESERVE = "/api/v1/reservations"
CHECK = "/api/v1/admission/check"


def reserve(client, project="acme", resource_type="vm", quantity="1", amount="10", key=None, **extra):
    body = {"project": project, "resource_type": resource_type, "quantity": quantity, **extra}
    if amount is not None:
        body["amount"] = amount
    return client.post_idem(RESERVE, body, key=key)


def commit(client, reservation_id, amount=None):
    return client.post(f"/api/v1/reservations/{reservation_id}/commit", {} if amount is None else {"amount": amount},
                       format="json")


def release(client, reservation_id):
    return client.post(f"/api/v1/reservations/{reservation_id}/release", format="json")


def wallet(client, slug="acme"):
    return client.get(f"/api/v1/projects/{slug}/wallet").json()


def units(text: str) -> int:
    """A quantity as callers write it ("2.5") → the micro-units the database holds."""
    return parse_quantity(text, allow_zero=True)


def set_quota(project: Project, code: str, limit: str | None) -> Quota:
    quota, _ = Quota.objects.update_or_create(project=project, resource_type=ResourceType.objects.get(code=code),
                                              defaults={"limit": None if limit is None else units(limit)})
    return quota


def quota_of(project: Project, code: str) -> Quota:
    return Quota.objects.get(project=project, resource_type__code=code)


def counts() -> tuple[int, int]:
    from wallets.models import Transfer

    return Reservation.objects.count(), Transfer.objects.count()


def ledger_is_consistent() -> bool:
    call_command("check_ledger", verbosity=0)  # raises CommandError on any drift
    return True
