"""POST /reservations/{id}/commit and /release, and expiry: each hold ends exactly once."""

from datetime import timedelta

from django.utils import timezone

from quotas import services
from quotas.models import Reservation
from quotas.tasks import expire_reservations
from quotas.tests.helpers import (
    commit,
    counts,
    ledger_is_consistent,
    quota_of,
    release,
    reserve,
    set_quota,
    units,
    wallet,
)
from wallets.models import Transfer
from wallets.selectors import system_account_balance


def _overdue(reservation_id: int) -> None:
    Reservation.objects.filter(id=reservation_id).update(expires_at=timezone.now() - timedelta(seconds=1))


def test_commit_charges_the_hold_and_turns_quota_into_usage(platform, project):
    created = reserve(platform, quantity="2", amount="10").json()
    response = commit(platform, created["id"])
    assert response.status_code == 200, response.json()
    assert (response.json()["status"], response.json()["committed_amount"]) == ("committed", "10")
    assert (wallet(platform)["balance"], wallet(platform)["reserved"]) == ("90", "0")
    assert (quota_of(project, "vm").used, quota_of(project, "vm").reserved) == (units("2"), units("0"))
    transfer = Transfer.objects.get(kind="reservation")
    assert (transfer.amount, transfer.reference) == (10_000_000, f"reservation:{created['id']}")
    assert system_account_balance("revenue") == 10_000_000
    assert ledger_is_consistent()


def test_a_partial_commit_releases_the_rest(platform, project):
    created = reserve(platform, amount="10").json()
    assert commit(platform, created["id"], amount="3.25").json()["committed_amount"] == "3.25"
    assert (wallet(platform)["balance"], wallet(platform)["reserved"], wallet(platform)["available"]) == ("96.75", "0", "96.75")
    assert ledger_is_consistent()


def test_a_zero_commit_charges_nothing_and_counts_usage(platform, project):
    created = reserve(platform, amount="10").json()
    assert commit(platform, created["id"], amount="0").status_code == 200
    assert (wallet(platform)["balance"], wallet(platform)["reserved"]) == ("100", "0")
    assert quota_of(project, "vm").used == units("1")
    assert not Transfer.objects.filter(kind="reservation").exists()
    assert ledger_is_consistent()


def test_committing_twice_returns_the_same_answer_and_charges_once(platform, project):
    created = reserve(platform, amount="10").json()
    first = commit(platform, created["id"])
    again = commit(platform, created["id"])
    same_amount = commit(platform, created["id"], amount="10")
    assert again.status_code == same_amount.status_code == 200
    assert again.json() == first.json() == same_amount.json()
    assert wallet(platform)["balance"] == "90"
    assert Transfer.objects.filter(kind="reservation").count() == 1


def test_committing_again_with_another_amount_is_409(platform, project):
    created = reserve(platform, amount="10").json()
    commit(platform, created["id"], amount="4")
    response = commit(platform, created["id"], amount="5")
    assert response.status_code == 409
    assert response.json()["error"] == "reservation_committed"
    assert wallet(platform)["balance"] == "96"


def test_committing_more_than_held_is_400_and_changes_nothing(platform, project):
    created = reserve(platform, amount="10").json()
    response = commit(platform, created["id"], amount="10.000001")
    assert response.status_code == 400
    assert response.json()["error"] == "validation_error"
    assert Reservation.objects.get(id=created["id"]).status == "pending"
    assert wallet(platform)["reserved"] == "10"


def test_commit_with_a_stray_field_is_400(platform, project):
    created = reserve(platform).json()
    response = platform.post(f"/api/v1/reservations/{created['id']}/commit", {"amout": "1"}, format="json")
    assert response.status_code == 400
    assert Reservation.objects.get(id=created["id"]).status == "pending"


def test_release_gives_the_holds_back(platform, project):
    set_quota(project, "vm", "1")
    created = reserve(platform).json()
    response = release(platform, created["id"])
    assert response.status_code == 200
    assert response.json()["status"] == "released"
    assert (wallet(platform)["balance"], wallet(platform)["reserved"]) == ("100", "0")
    assert (quota_of(project, "vm").used, quota_of(project, "vm").reserved) == (units("0"), units("0"))
    assert reserve(platform).status_code == 201  # the quota has room again
    assert ledger_is_consistent()


def test_releasing_twice_returns_the_same_answer(platform, project):
    created = reserve(platform).json()
    first = release(platform, created["id"])
    again = release(platform, created["id"])
    assert again.status_code == 200
    assert again.json() == first.json()
    assert wallet(platform)["reserved"] == "0"


def test_committing_a_released_reservation_is_409(platform, project):
    created = reserve(platform).json()
    release(platform, created["id"])
    before = counts()
    response = commit(platform, created["id"])
    assert response.status_code == 409
    assert response.json()["error"] == "reservation_released"
    assert counts() == before
    assert wallet(platform)["balance"] == "100"


def test_releasing_a_committed_reservation_is_409(platform, project):
    created = reserve(platform).json()
    commit(platform, created["id"])
    response = release(platform, created["id"])
    assert response.status_code == 409
    assert response.json()["error"] == "reservation_committed"
    assert wallet(platform)["balance"] == "90"


def test_an_overdue_reservation_reads_as_expired_before_the_task_runs(platform, project):
    created = reserve(platform).json()
    _overdue(created["id"])
    assert platform.get(f"/api/v1/reservations/{created['id']}").json()["status"] == "expired"


def test_committing_an_overdue_reservation_is_409_and_releases_its_hold(platform, project):
    created = reserve(platform, amount="10").json()
    _overdue(created["id"])
    response = commit(platform, created["id"])
    assert response.status_code == 409
    assert response.json()["error"] == "reservation_expired"
    assert (wallet(platform)["balance"], wallet(platform)["reserved"]) == ("100", "0")
    assert Reservation.objects.get(id=created["id"]).status == "expired"
    assert ledger_is_consistent()


def test_releasing_an_overdue_reservation_is_409_expired(platform, project):
    created = reserve(platform).json()
    _overdue(created["id"])
    response = release(platform, created["id"])
    assert response.status_code == 409
    assert response.json()["error"] == "reservation_expired"
    assert wallet(platform)["reserved"] == "0"


def test_overdue_holds_do_not_block_admission_before_the_task_runs(platform, project):
    set_quota(project, "vm", "1")
    created = reserve(platform, amount="100").json()
    _overdue(created["id"])
    response = reserve(platform, amount="100")
    assert response.status_code == 201, response.json()
    assert Reservation.objects.get(id=created["id"]).status == "expired"
    assert wallet(platform)["reserved"] == "100"
    assert ledger_is_consistent()


def test_the_expiry_task_releases_overdue_holds_once(platform, project):
    live = reserve(platform, amount="5").json()
    overdue = reserve(platform, amount="7").json()
    _overdue(overdue["id"])
    assert expire_reservations.delay().get() == 1
    assert expire_reservations() == 0  # safe to run again
    assert Reservation.objects.get(id=overdue["id"]).status == "expired"
    assert Reservation.objects.get(id=live["id"]).status == "pending"
    assert wallet(platform)["reserved"] == "5"
    assert quota_of(project, "vm").reserved == units("1")
    assert ledger_is_consistent()


def test_the_expiry_task_is_scheduled_every_minute_in_the_admin_tables(db):
    from django_celery_beat.models import PeriodicTask

    task = PeriodicTask.objects.get(task="quotas.tasks.expire_reservations")
    assert task.enabled
    assert (task.interval.every, task.interval.period) == (1, "minutes")


def test_an_expired_reservation_cannot_be_expired_twice(platform, project):
    created = reserve(platform).json()
    _overdue(created["id"])
    assert services.reservation_expire(reservation_id=created["id"]) is True
    assert services.reservation_expire(reservation_id=created["id"]) is False
    assert wallet(platform)["reserved"] == "0"


def test_an_unknown_reservation_is_404(platform, project):
    assert commit(platform, 999999).status_code == 404
    assert release(platform, 999999).status_code == 404
    assert platform.get("/api/v1/reservations/999999").status_code == 404
