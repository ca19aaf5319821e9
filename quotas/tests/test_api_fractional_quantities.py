"""Fractional quantities are exact on every backend: quotas add, subtract and compare them as integers
of micro-units, so a hold always comes off exactly what it put on (SQLite once kept them as floats)."""

from datetime import timedelta

import pytest
from django.utils import timezone

from quotas.models import Reservation
from quotas.tasks import expire_reservations
from quotas.tests.helpers import commit, ledger_is_consistent, quota_of, release, reserve, set_quota, wallet
from wallets.tests.factories import ProjectFactory


def _overdue(reservation_id: int) -> None:
    Reservation.objects.filter(id=reservation_id).update(expires_at=timezone.now() - timedelta(seconds=1))


@pytest.mark.parametrize("ending", ["commit", "release", "expire"])
def test_fractional_quota_holds_release_exactly(platform, project, ending):
    small = reserve(platform, quantity="0.3", amount="1").json()
    large = reserve(platform, quantity="0.6", amount="2").json()
    assert release(platform, small["id"]).status_code == 200

    if ending == "commit":
        assert commit(platform, large["id"]).status_code == 200
    elif ending == "release":
        assert release(platform, large["id"]).status_code == 200
    else:
        _overdue(large["id"])
        assert expire_reservations() == 1

    quota = quota_of(project, "vm")
    assert quota.reserved == 0
    assert quota.used == (600_000 if ending == "commit" else 0)
    assert wallet(platform)["reserved"] == "0"
    assert ledger_is_consistent()


def test_fractional_holds_up_to_the_limit_are_admitted(platform, project):
    set_quota(project, "vm", "0.3")
    assert reserve(platform, quantity="0.1", amount="1").status_code == 201
    assert reserve(platform, quantity="0.2", amount="1").status_code == 201
    refused = reserve(platform, quantity="0.000001", amount="1")
    assert refused.status_code == 409
    assert (refused.json()["limit"], refused.json()["reserved"]) == ("0.3", "0.3")
    assert platform.get("/api/v1/projects/acme/quotas/vm").json()["available"] == "0"
    assert ledger_is_consistent()


def test_many_fractional_commits_add_up_exactly(platform, project):
    set_quota(project, "vm", "1")
    for _ in range(10):
        assert commit(platform, reserve(platform, quantity="0.1", amount="0.1").json()["id"]).status_code == 200
    assert quota_of(project, "vm").used == 1_000_000
    assert reserve(platform, quantity="0.000001", amount="0.1").status_code == 409


def test_one_reservation_the_database_refuses_to_release_does_not_stop_the_others_expiring(platform, project):
    other = ProjectFactory(slug="beta", balance="100")
    odd = reserve(platform, quantity="0.6", amount="2").json()
    fine = [reserve(platform, project=slug, quantity="0.3", amount="1").json() for slug in ("acme", "beta")]
    for reservation in (odd, *fine):
        _overdue(reservation["id"])
    # A quota row that no longer covers its hold (as drift once left them): its release violates the
    # CHECK constraint. The expiry task must still release every other overdue hold.
    quota = quota_of(project, "vm")
    quota.reserved = 500_000
    quota.save(update_fields=["reserved"])

    assert expire_reservations() == 2

    assert Reservation.objects.get(id=odd["id"]).status == "pending"
    assert [Reservation.objects.get(id=r["id"]).status for r in fine] == ["expired", "expired"]
    assert (quota_of(project, "vm").reserved, quota_of(other, "vm").reserved) == (200_000, 0)
    assert wallet(platform, "beta")["reserved"] == "0"
    assert expire_reservations() == 0  # the odd one is tried again, and refused again, each run
