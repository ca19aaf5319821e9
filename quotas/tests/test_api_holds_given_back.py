"""A hold given back — a release, a commit of nothing, an expiry — is funding, as the unused part of a
commit already was: a project in grace whose available balance it takes above zero is active again at
once (README: "Funding ... that leaves available > 0 reactivates the project at once"). Before, only a
commit of part of a hold did it; the project
stayed in grace, refusing new reservations, until the lifecycle sweep. Found by the model-based test
(creditservice/tests/test_model_books.py)."""

from datetime import timedelta

from django.utils import timezone

from quotas.models import Reservation
from quotas.tasks import expire_reservations
from quotas.tests.helpers import commit, ledger_is_consistent, release, reserve, wallet


def _in_grace_with_a_hold(platform) -> int:
    """acme (100 credits) holds 5 and has its other 95 debited: available 0, so it is in grace."""
    hold = reserve(platform, amount="5").json()
    assert platform.post_idem("/api/v1/projects/acme/wallet/debit", {"amount": "95", "reason": "all"}).status_code == 201
    assert (wallet(platform)["available"], wallet(platform)["status"]) == ("0", "grace")
    return hold["id"]


def test_a_release_that_funds_a_project_in_grace_reactivates_it(platform, project, django_capture_on_commit_callbacks):
    hold_id = _in_grace_with_a_hold(platform)
    with django_capture_on_commit_callbacks(execute=True):
        assert release(platform, hold_id).status_code == 200
    assert (wallet(platform)["available"], wallet(platform)["status"]) == ("5", "active")
    assert ledger_is_consistent()


def test_a_commit_of_nothing_that_funds_a_project_in_grace_reactivates_it(platform, project,
                                                                          django_capture_on_commit_callbacks):
    hold_id = _in_grace_with_a_hold(platform)
    with django_capture_on_commit_callbacks(execute=True):
        assert commit(platform, hold_id, amount="0").status_code == 200
    assert (wallet(platform)["available"], wallet(platform)["status"]) == ("5", "active")


def test_an_expiry_that_funds_a_project_in_grace_reactivates_it(platform, project, django_capture_on_commit_callbacks):
    hold_id = _in_grace_with_a_hold(platform)
    Reservation.objects.filter(id=hold_id).update(expires_at=timezone.now() - timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert expire_reservations() == 1
    assert (wallet(platform)["available"], wallet(platform)["status"]) == ("5", "active")


def test_a_commit_of_all_it_holds_funds_nothing(platform, project, django_capture_on_commit_callbacks):
    hold_id = _in_grace_with_a_hold(platform)
    with django_capture_on_commit_callbacks(execute=True):
        assert commit(platform, hold_id).status_code == 200
    assert (wallet(platform)["available"], wallet(platform)["status"]) == ("0", "grace")
