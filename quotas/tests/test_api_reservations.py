"""POST /reservations and GET /reservations/{id}: holds are taken whole or not at all."""

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from creditservice.testing.fixtures import ServiceClient
from quotas.models import Budget, QuotaDefault, Reservation, ResourceType
from quotas.tests.helpers import (
    RESERVE,
    counts,
    ledger_is_consistent,
    quota_of,
    reserve,
    set_quota,
    units,
    wallet,
)
from wallets.models import Project
from wallets.tests.factories import ProjectFactory, member, scoped_key


def test_a_reservation_holds_credits_and_quota(platform, project):
    response = reserve(platform, quantity="2", amount="10.5")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["project"] == "acme" and body["resource_type"] == "vm"
    assert (body["quantity"], body["amount"], body["status"], body["committed_amount"]) == ("2", "10.5", "pending", None)
    assert set(body) >= {"id", "expires_at", "created_at"}
    assert wallet(platform)["reserved"] == "10.5"
    assert wallet(platform)["available"] == "89.5"
    assert quota_of(project, "vm").reserved == units("2")
    assert ledger_is_consistent()


def test_the_default_ttl_applies_and_one_beyond_the_maximum_is_refused(platform, project):
    default = reserve(platform).json()
    with override_settings(RESERVATION_MAX_TTL_SECONDS=600):
        longest = reserve(platform, ttl_seconds=600)
        beyond = reserve(platform, ttl_seconds=601)
    row = Reservation.objects.get(id=default["id"])
    assert row.expires_at - row.created_at == timedelta(seconds=300)
    assert longest.status_code == 201, longest.json()
    row = Reservation.objects.get(id=longest.json()["id"])
    assert row.expires_at - row.created_at == timedelta(seconds=600)
    # Refused, not silently capped: the caller would otherwise lose its hold before it expects to.
    assert beyond.status_code == 400
    assert "600" in beyond.json()["detail"]["ttl_seconds"][0]
    assert Reservation.objects.count() == 2


def test_hourly_cost_holds_the_minimum_runtime(platform, project):
    response = reserve(platform, amount=None, hourly_cost="0.5")
    assert response.status_code == 201, response.json()
    assert response.json()["amount"] == "12"  # 0.5 × 24 h
    assert wallet(platform)["reserved"] == "12"


def test_the_projects_own_minimum_runtime_overrides_the_setting(platform, project):
    Project.objects.filter(id=project.id).update(min_runtime_hours=100)
    assert reserve(platform, amount=None, hourly_cost="0.5").json()["amount"] == "50"
    assert reserve(platform, amount=None, hourly_cost="1").status_code == 402  # 100 h need 100, 50 left


def test_a_resource_that_cannot_run_the_minimum_time_is_refused(platform, project):
    response = reserve(platform, amount=None, hourly_cost="4.2")  # 100.8 for 24 h, 100 available
    assert response.status_code == 402
    assert response.json()["error"] == "insufficient_credits"


def test_insufficient_credits_is_402_and_writes_nothing(platform, project):
    before = counts()
    response = reserve(platform, amount="100.000001", key="k-poor")
    assert response.status_code == 402
    body = response.json()
    assert (body["error"], body["available"], body["requested"]) == ("insufficient_credits", "100", "100.000001")
    assert counts() == before
    assert wallet(platform)["reserved"] == "0"
    # The key was not used up: the same key works once there is room.
    assert reserve(platform, amount="100", key="k-poor").status_code == 201


def test_quota_exceeded_is_409_with_the_numbers_and_writes_nothing(platform, project):
    set_quota(project, "vcpu", "8")
    assert reserve(platform, resource_type="vcpu", quantity="6", amount="1").status_code == 201
    before = counts()
    response = reserve(platform, resource_type="vcpu", quantity="2.5", amount="1")
    assert response.status_code == 409
    body = response.json()
    assert body["error"] == "quota_exceeded"
    assert (body["limit"], body["used"], body["reserved"], body["requested"]) == ("8", "0", "6", "2.5")
    assert counts() == before
    assert wallet(platform)["reserved"] == "1"
    assert quota_of(project, "vcpu").reserved == units("6")
    assert reserve(platform, resource_type="vcpu", quantity="2", amount="1").status_code == 201


def test_a_staff_default_limits_projects_without_their_own_quota(platform, project):
    QuotaDefault.objects.create(resource_type=ResourceType.objects.get(code="gpu"), limit=units("1"))
    before = counts()
    response = reserve(platform, resource_type="gpu", quantity="2")
    assert response.status_code == 409
    assert response.json()["limit"] == "1"
    assert counts() == before
    assert reserve(platform, resource_type="gpu", quantity="1").status_code == 201
    assert reserve(platform, resource_type="gpu", quantity="1").status_code == 409


def test_no_quota_means_no_limit_but_usage_is_tracked(platform, project):
    assert reserve(platform, resource_type="storage_gib", quantity="100000", amount="1").status_code == 201
    assert quota_of(project, "storage_gib").limit is None
    assert quota_of(project, "storage_gib").reserved == units("100000")


def test_budget_exceeded_is_402_with_the_numbers(platform, project):
    Budget.objects.create(project=project, hard_limit=30_000_000)
    assert reserve(platform, amount="20").status_code == 201
    before = counts()
    response = reserve(platform, amount="10.000001")
    assert response.status_code == 402
    body = response.json()
    assert (body["error"], body["limit"], body["spent"], body["requested"]) == ("budget_exceeded", "30", "20", "10.000001")
    assert counts() == before
    assert reserve(platform, amount="10").status_code == 201


@pytest.mark.parametrize("status", [Project.Status.GRACE, Project.Status.SUSPENDED, Project.Status.CLOSED])
def test_a_project_not_active_admits_nothing(platform, project, status):
    Project.objects.filter(id=project.id).update(status=status)
    before = counts()
    response = reserve(platform)
    assert response.status_code == 403
    assert response.json()["error"] == "project_suspended"
    assert counts() == before
    assert wallet(platform)["reserved"] == "0"


def test_a_replay_returns_the_first_answer_and_holds_once(platform, project):
    first = reserve(platform, key="same")
    again = reserve(platform, key="same")
    assert again.status_code == first.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert wallet(platform)["reserved"] == "10"


def test_a_replay_after_commit_still_returns_the_first_answer(platform, project):
    first = reserve(platform, key="k").json()
    platform.post(f"/api/v1/reservations/{first['id']}/commit", format="json")
    assert reserve(platform, key="k").json() == first
    assert wallet(platform)["balance"] == "90"


def test_the_same_key_with_another_body_is_422(platform, project):
    reserve(platform, key="same", amount="10")
    response = reserve(platform, key="same", amount="11")
    assert response.status_code == 422
    assert response.json()["error"] == "idempotency_key_reused"
    assert wallet(platform)["reserved"] == "10"


def test_the_idempotency_key_is_required(platform, project):
    response = platform.post(RESERVE, {"project": "acme", "resource_type": "vm", "quantity": "1", "amount": "1"},
                             format="json")
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["detail"]
    assert counts()[0] == 0


@pytest.mark.parametrize("change,field", [
    ({"quantity": "0"}, "quantity"),
    ({"quantity": "-1"}, "quantity"),
    ({"quantity": "NaN"}, "quantity"),
    ({"quantity": "Infinity"}, "quantity"),
    ({"quantity": "0.0000001"}, "quantity"),
    ({"quantity": 1.5}, "quantity"),
    ({"quantity": "1e20"}, "quantity"),
    ({"amount": "-1"}, "amount"),
    ({"amount": "1.0000001"}, "amount"),
    ({"amount": 2.5}, "amount"),
    ({"hourly_cost": "1"}, "amount"),  # both amount and hourly_cost
    ({"amount": None}, "amount"),
    ({"ttl_seconds": 0}, "ttl_seconds"),
    ({"ttl_seconds": "soon"}, "ttl_seconds"),
    ({"resource_type": "teleporter"}, "resource_type"),
    ({"amout": "1"}, "amout"),
])
def test_bad_input_is_a_400_that_writes_nothing(platform, project, change, field):
    body = {"project": "acme", "resource_type": "vm", "quantity": "1", "amount": "1", **change}
    if change.get("amount", "") is None:
        del body["amount"]
    response = platform.post_idem(RESERVE, body)
    assert response.status_code == 400, response.json()
    assert response.json()["error"] == "validation_error"
    assert field in response.json()["detail"]
    assert counts()[0] == 0
    assert wallet(platform)["reserved"] == "0"


def test_an_unknown_project_is_404(platform, project):
    assert reserve(platform, project="nope").status_code == 404


def test_a_scoped_key_reserves_for_its_project_only(project):
    other = ProjectFactory(slug="other", balance="50")
    client = ServiceClient(scoped_key(project))
    assert reserve(client).status_code == 201
    response = reserve(client, project="other")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert other.wallet.reserved == 0


def test_a_member_can_read_but_not_reserve(client, project):
    user = member(project)
    client.force_login(user)
    response = client.post(RESERVE, {"project": "acme", "resource_type": "vm", "quantity": "1", "amount": "1"},
                           content_type="application/json", HTTP_IDEMPOTENCY_KEY="m1")
    assert response.status_code == 403
    assert counts()[0] == 0


def test_unauthenticated_is_401(anonymous, project):
    assert reserve(anonymous).status_code == 401


def test_it_shows_a_reservation(platform, project):
    created = reserve(platform).json()
    response = platform.get(f"/api/v1/reservations/{created['id']}")
    assert response.status_code == 200
    assert response.json() == created


def test_another_projects_reservation_is_404_for_a_scoped_key(platform, project):
    ProjectFactory(slug="other", balance="50")
    created = reserve(platform, project="other").json()
    client = ServiceClient(scoped_key(project))
    assert client.get(f"/api/v1/reservations/{created['id']}").status_code == 404
    assert client.post(f"/api/v1/reservations/{created['id']}/commit", format="json").status_code == 404
    assert client.post(f"/api/v1/reservations/{created['id']}/release", format="json").status_code == 404
    assert Reservation.objects.get(id=created["id"]).status == "pending"
    assert wallet(platform, "other")["reserved"] == "10"


def test_a_member_sees_own_project_reservations_only(client, platform, project):
    ProjectFactory(slug="other", balance="50")
    mine = reserve(platform).json()
    theirs = reserve(platform, project="other").json()
    client.force_login(member(project))
    assert client.get(f"/api/v1/reservations/{mine['id']}").status_code == 200
    assert client.get(f"/api/v1/reservations/{theirs['id']}").status_code == 404


def test_lists_a_projects_reservations_by_status(platform, project):
    a = reserve(platform).json()
    b = reserve(platform).json()
    c = reserve(platform).json()
    platform.post(f"/api/v1/reservations/{b['id']}/commit", format="json")
    Reservation.objects.filter(id=c["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    listed = lambda query: [r["id"] for r in platform.get(f"/api/v1/projects/acme/reservations{query}").json()["results"]]  # noqa: E731
    assert listed("") == [c["id"], b["id"], a["id"]]
    assert listed("?status=pending") == [a["id"]]
    assert listed("?status=committed") == [b["id"]]
    assert listed("?status=expired") == [c["id"]]
    assert platform.get("/api/v1/projects/acme/reservations?status=bogus").status_code == 400


def test_a_replay_is_answered_even_when_a_new_request_would_be_refused(platform, project):
    first = reserve(platform, amount="100", key="all-in")
    assert reserve(platform, amount="100", key="all-in").json() == first.json()  # no credits left for a new one
    Project.objects.filter(id=project.id).update(status=Project.Status.SUSPENDED)
    again = reserve(platform, amount="100", key="all-in")
    assert again.status_code == 201
    assert again.json() == first.json()
    assert wallet(platform)["reserved"] == "100"


def test_staff_reserve_through_the_session_with_the_same_rules(admin_client, project):
    body = {"project": "acme", "resource_type": "vm", "quantity": "1", "amount": "60"}
    first = admin_client.post(RESERVE, body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="s1")
    assert first.status_code == 201, first.json()
    refused = admin_client.post(RESERVE, body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="s2")
    assert refused.status_code == 402
    replay = admin_client.post(RESERVE, body, content_type="application/json", HTTP_IDEMPOTENCY_KEY="s1")
    assert replay.json() == first.json()
    assert Reservation.objects.count() == 1
