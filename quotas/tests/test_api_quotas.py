"""GET/PUT /projects/{slug}/quotas..., the release of usage, and POST /admission/check."""

from datetime import timedelta

from django.utils import timezone

from creditservice.testing.fixtures import ServiceClient
from quotas.models import Budget, Reservation
from quotas.tests.helpers import CHECK, commit, quota_of, reserve, set_quota, units
from wallets.models import IdempotencyRecord, Project
from wallets.tests.factories import ProjectFactory, member, scoped_key

QUOTA = "/api/v1/projects/acme/quotas/vcpu"


def test_it_lists_the_projects_quotas(platform, project):
    set_quota(project, "vcpu", "16")
    commit(platform, reserve(platform, resource_type="vcpu", quantity="4", amount="1").json()["id"])
    reserve(platform, resource_type="vcpu", quantity="2", amount="1")
    body = platform.get("/api/v1/projects/acme/quotas").json()
    assert body == [{"project": "acme", "resource_type": "vcpu", "unit": "vCPU", "limit": "16", "used": "4",
                     "reserved": "2", "available": "10", "is_default": False}]


def test_a_type_without_quota_shows_no_limit(platform, project):
    body = platform.get(QUOTA).json()
    assert (body["limit"], body["used"], body["reserved"], body["available"]) == (None, "0", "0", None)


def test_an_unknown_resource_type_is_404(platform, project):
    assert platform.get("/api/v1/projects/acme/quotas/teleporter").status_code == 404


def test_platform_sets_and_removes_a_limit(platform, project):
    response = platform.put(QUOTA, {"limit": "8.5"}, format="json")
    assert response.status_code == 200
    assert response.json()["limit"] == "8.5"
    assert quota_of(project, "vcpu").limit == units("8.5")
    assert platform.put(QUOTA, {"limit": None}, format="json").json()["limit"] is None


def test_a_limit_below_usage_refuses_new_reservations_only(platform, project):
    reserve(platform, resource_type="vcpu", quantity="4", amount="1")
    platform.put(QUOTA, {"limit": "2"}, format="json")
    assert quota_of(project, "vcpu").reserved == units("4")
    assert reserve(platform, resource_type="vcpu", quantity="1", amount="1").status_code == 409


def test_bad_limits_are_400(platform, project):
    for body in ({"limit": "-1"}, {"limit": "abc"}, {}, {"limit": "1", "x": 1}):
        assert platform.put(QUOTA, body, format="json").status_code == 400
    assert not project.quotas.exists()


def test_a_scoped_key_reads_but_cannot_set_limits(project):
    client = ServiceClient(scoped_key(project))
    assert client.get(QUOTA).status_code == 200
    response = client.put(QUOTA, {"limit": "100"}, format="json")
    assert response.status_code == 403
    assert not project.quotas.exists()


def test_another_projects_quotas_are_404_for_a_scoped_key(project):
    ProjectFactory(slug="other")
    client = ServiceClient(scoped_key(project))
    assert client.get("/api/v1/projects/other/quotas").status_code == 404
    assert client.get("/api/v1/projects/other/quotas/vcpu").status_code == 404


def test_a_member_reads_quotas(client, project):
    client.force_login(member(project))
    assert client.get("/api/v1/projects/acme/quotas").status_code == 200
    assert client.put(QUOTA, {"limit": "1"}, content_type="application/json").status_code == 403


def test_releasing_usage_lowers_used_never_below_zero(platform, project):
    commit(platform, reserve(platform, resource_type="vcpu", quantity="3", amount="1").json()["id"])
    response = platform.post_idem(f"{QUOTA}/release", {"quantity": "2"})
    assert response.status_code == 200, response.json()
    assert response.json()["used"] == "1"
    assert platform.post_idem(f"{QUOTA}/release", {"quantity": "5"}).json()["used"] == "0"
    assert quota_of(project, "vcpu").used == units("0")


def test_a_retried_usage_release_releases_once(platform, project):
    commit(platform, reserve(platform, resource_type="vcpu", quantity="3", amount="1").json()["id"])
    platform.post_idem(f"{QUOTA}/release", {"quantity": "1"}, key="r1")
    again = platform.post_idem(f"{QUOTA}/release", {"quantity": "1"}, key="r1")
    assert again["Idempotent-Replayed"] == "true"
    assert quota_of(project, "vcpu").used == units("2")


def test_a_bad_usage_release_is_400_and_writes_nothing(platform, project):
    for body in ({"quantity": "0"}, {"quantity": "-1"}, {}):
        assert platform.post_idem(f"{QUOTA}/release", body).status_code == 400
    assert not IdempotencyRecord.objects.exists()


def _check(client, **change):
    body = {"project": "acme", "resource_type": "vcpu", "quantity": "1", "amount": "10", **change}
    return client.post(CHECK, body, format="json")


def test_check_admits_and_writes_nothing(platform, project):
    response = _check(platform)
    assert response.status_code == 200
    body = response.json()
    assert (body["allowed"], body["reason"], body["available"]) == (True, None, "100")
    assert body["quota"] == {"limit": None, "used": "0", "reserved": "0"}
    assert not Reservation.objects.exists() and not project.quotas.exists()


def test_check_gives_each_reason(platform, project):
    assert _check(platform, amount="100.5").json()["reason"] == "insufficient_credits"
    set_quota(project, "vcpu", "2")
    assert _check(platform, quantity="3").json()["reason"] == "quota_exceeded"
    assert _check(platform, quantity="3").json()["quota"]["limit"] == "2"
    Budget.objects.create(project=project, hard_limit=5_000_000)
    assert _check(platform).json()["reason"] == "budget_exceeded"
    assert _check(platform, amount="5").json()["allowed"] is True
    Project.objects.filter(id=project.id).update(status="grace")
    assert _check(platform, amount="5").json()["reason"] == "project_suspended"


def test_check_with_hourly_cost_uses_the_minimum_runtime(platform, project):
    body = platform.post(CHECK, {"project": "acme", "resource_type": "vm", "quantity": "1", "hourly_cost": "5"},
                         format="json").json()
    assert (body["allowed"], body["amount"], body["reason"]) == (False, "120", "insufficient_credits")


def test_check_does_not_count_overdue_holds(platform, project):
    created = reserve(platform, amount="100").json()
    Reservation.objects.filter(id=created["id"]).update(expires_at=timezone.now() - timedelta(seconds=1))
    body = _check(platform, amount="100").json()
    assert (body["allowed"], body["available"]) == (True, "100")


def test_check_validates_its_input(platform, project):
    assert _check(platform, quantity="-1").status_code == 400
    assert _check(platform, project="nope").status_code == 404
    assert ServiceClient(scoped_key(ProjectFactory(slug="other"))).post(
        CHECK, {"project": "acme", "resource_type": "vm", "quantity": "1", "amount": "1"}, format="json",
    ).status_code == 404
