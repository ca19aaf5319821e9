"""Funding counts the wallet as admission does: a hold past its expiry is free (README: "Every read
agrees with admission"), even before the expiry task releases it. A credit or a usage credit-back that
leaves available > 0 only because such a hold is free reactivates a project in grace at once; the ledger
used to decide on the cached figures, where the overdue hold still counted, and left the project in
grace. Found by the model-based test (creditservice/tests/test_model_books.py)."""

from datetime import timedelta

from django.utils import timezone

from quotas.models import Reservation
from quotas.tests.helpers import reserve, wallet
from wallets import ledger
from wallets.models import Transfer


def _in_grace_past_an_expired_hold(platform, project) -> None:
    """acme holds 30 and is charged 90 for usage: balance 10, cached available -20, so it is in grace; then
    the hold passes its expiry (the task has not run): available 10 as everyone reads it, cached still -20."""
    hold = reserve(platform, amount="30").json()
    ledger.transfer(project=project, direction="out", system_code="revenue", amount=90_000_000,
                    kind=Transfer.Kind.USAGE, idempotency_key="test:usage", require_funds=False)
    assert wallet(platform)["status"] == "grace"
    Reservation.objects.filter(id=hold["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert (wallet(platform)["available"], wallet(platform)["status"]) == ("10", "grace")


def test_a_credit_that_leaves_available_above_zero_past_an_expired_hold_reactivates(platform, project):
    _in_grace_past_an_expired_hold(platform, project)
    response = platform.post_idem("/api/v1/projects/acme/wallet/credit", {"amount": "1", "reason": "goodwill"})
    assert response.status_code == 201
    assert (response.json()["available"], response.json()["status"]) == ("11", "active")


def test_a_usage_credit_back_that_leaves_available_above_zero_past_an_expired_hold_reactivates(
        platform, project, django_capture_on_commit_callbacks):
    _in_grace_past_an_expired_hold(platform, project)
    with django_capture_on_commit_callbacks(execute=True):
        ledger.transfer_many(transfers=[ledger.BulkTransfer(project.id, 1_000_000, "test:credit-back")], direction="in",
                             system_code="revenue", kind=Transfer.Kind.REVERSAL, reason="usage credit-back")
    assert (wallet(platform)["available"], wallet(platform)["status"]) == ("11", "active")


def test_a_credit_that_leaves_available_below_zero_reactivates_nothing(platform, project):
    _in_grace_past_an_expired_hold(platform, project)
    ledger.transfer(project=project, direction="out", system_code="revenue", amount=20_000_000,
                    kind=Transfer.Kind.USAGE, idempotency_key="test:usage-2", require_funds=False)
    response = platform.post_idem("/api/v1/projects/acme/wallet/credit", {"amount": "1", "reason": "a little"})
    assert (response.json()["available"], response.json()["status"]) == ("-9", "grace")
