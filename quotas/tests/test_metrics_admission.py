"""Admission's counters move when a caller is admitted or refused, and when a hold ends.

Read from this process's registry, before and after real API calls with an API key (on PostgreSQL on
both implementations of reserve and commit, quotas/conftest.py). Counts of writes wait for the commit,
so each call runs under django_capture_on_commit_callbacks(execute=True) in these rolled-back tests.
"""

from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY

from quotas import metrics
from quotas.errors import BudgetExceeded, ProjectSuspended, QuotaExceeded
from quotas.models import Budget, Reservation
from quotas.tasks import expire_reservations
from quotas.tests.helpers import CHECK, commit, release, reserve, set_quota
from wallets.models import Project


def decisions(result: str) -> float:
    return REGISTRY.get_sample_value("creditservice_admission_decisions_total", {"result": result}) or 0.0


def reservations(outcome: str) -> float:
    return REGISTRY.get_sample_value("creditservice_reservations_total", {"outcome": outcome}) or 0.0


def check(client, amount="10", quantity="1"):
    return client.post(CHECK, {"project": "acme", "resource_type": "vm", "quantity": quantity, "amount": amount},
                       format="json")


@pytest.fixture
def counted(django_capture_on_commit_callbacks):
    """Run a call and its after-commit callbacks, as a committed request would."""

    def run(call, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return call(*args, **kwargs)

    return run


def test_an_admitted_reservation_counts_allowed_and_created(platform, project, counted):
    before = decisions("allowed"), reservations("created")
    assert counted(reserve, platform).status_code == 201
    assert (decisions("allowed"), reservations("created")) == (before[0] + 1, before[1] + 1)


def test_a_replayed_reservation_is_not_a_new_decision(platform, project, counted):
    assert counted(reserve, platform, key="same").status_code == 201
    before = decisions("allowed"), reservations("created")
    replay = counted(reserve, platform, key="same")
    assert replay.status_code == 201 and replay["Idempotent-Replayed"] == "true"
    assert (decisions("allowed"), reservations("created")) == before


@pytest.mark.parametrize("result", metrics.ADMISSION_RESULTS[1:])
def test_each_refusal_of_a_reservation_counts_under_its_code(platform, project, counted, result):
    amount, quantity = "10", "1"
    if result == "insufficient_credits":
        amount = "100.5"
    elif result == "quota_exceeded":
        set_quota(project, "vm", "1")
        quantity = "2"
    elif result == "budget_exceeded":
        Budget.objects.create(project=project, hard_limit=5_000_000)
    else:
        Project.objects.filter(id=project.id).update(status=Project.Status.SUSPENDED)
    before = decisions(result), decisions("allowed"), reservations("created")
    response = counted(reserve, platform, amount=amount, quantity=quantity)
    assert response.json()["error"] == result
    assert (decisions(result), decisions("allowed"), reservations("created")) == (before[0] + 1, before[1], before[2])


def test_every_refusal_code_of_admission_has_its_own_label():
    # The closed label set names every refusal that reserve raises (a code missing there would fail the call).
    codes = {error.code for error in (ProjectSuspended, QuotaExceeded, BudgetExceeded)} | {"insufficient_credits"}
    assert codes | {"allowed"} == set(metrics.ADMISSION_RESULTS)


def test_the_check_endpoint_counts_its_answer(platform, project):
    before = decisions("allowed"), decisions("insufficient_credits")
    assert check(platform).json()["allowed"] is True
    assert check(platform, amount="100.5").json()["reason"] == "insufficient_credits"
    assert (decisions("allowed"), decisions("insufficient_credits")) == (before[0] + 1, before[1] + 1)


def test_a_commit_counts_once_and_its_repeat_not_at_all(platform, project, counted):
    created = counted(reserve, platform).json()
    before = reservations("committed")
    assert counted(commit, platform, created["id"]).status_code == 200
    assert counted(commit, platform, created["id"]).status_code == 200  # idempotent: the same answer
    assert reservations("committed") == before + 1


def test_a_release_counts_once(platform, project, counted):
    created = counted(reserve, platform).json()
    before = reservations("released")
    assert counted(release, platform, created["id"]).status_code == 200
    assert counted(release, platform, created["id"]).status_code == 200
    assert reservations("released") == before + 1


def test_the_expiry_task_counts_each_expired_hold(platform, project, counted):
    ids = [counted(reserve, platform, amount="1").json()["id"] for _ in range(3)]
    Reservation.objects.filter(id__in=ids[:2]).update(expires_at=timezone.now() - timedelta(seconds=1))
    before = reservations("expired")
    assert counted(expire_reservations) == 2
    assert counted(expire_reservations) == 0
    assert reservations("expired") == before + 2


def test_nothing_counts_before_the_transaction_commits(platform, project):
    # Inside a transaction that never commits (this test's own), the reservation is not counted.
    before = reservations("created")
    assert reserve(platform).status_code == 201
    assert reservations("created") == before
