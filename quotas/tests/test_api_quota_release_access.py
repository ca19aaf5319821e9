"""POST /projects/{slug}/quotas/{type}/release: only platform keys and staff with quotas.change_quota may lower `used`."""

from django.contrib.auth.models import Permission

from creditservice.testing.fixtures import ServiceClient
from quotas.tests.helpers import commit, reserve, set_quota
from wallets.models import IdempotencyRecord
from wallets.tests.factories import UserFactory, member, scoped_key

QUOTA = "/api/v1/projects/acme/quotas/vcpu"
RELEASE = f"{QUOTA}/release"


def used(platform) -> str:
    return platform.get(QUOTA).json()["used"]


def test_a_project_scoped_key_cannot_release_its_own_usage(platform, project):
    set_quota(project, "vcpu", "4")
    commit(platform, reserve(platform, resource_type="vcpu", quantity="4", amount="1").json()["id"])
    client = ServiceClient(scoped_key(project))
    response = client.post_idem(RELEASE, {"quantity": "4"})
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    assert used(platform) == "4"
    assert not IdempotencyRecord.objects.exists()
    # So the quota still holds: the scoped key cannot make room for a fifth vCPU.
    assert reserve(client, resource_type="vcpu", quantity="1", amount="1").status_code == 409


def test_a_member_cannot_release_usage(client, project, platform):
    commit(platform, reserve(platform, resource_type="vcpu", quantity="2", amount="1").json()["id"])
    client.force_login(member(project))
    response = client.post(RELEASE, {"quantity": "2"}, content_type="application/json", HTTP_IDEMPOTENCY_KEY="m1")
    assert response.status_code == 403
    assert used(platform) == "2"


def test_platform_keys_and_staff_with_the_permission_release_usage(client, project, platform):
    commit(platform, reserve(platform, resource_type="vcpu", quantity="3", amount="1").json()["id"])
    assert platform.post_idem(RELEASE, {"quantity": "1"}).json()["used"] == "2"
    staff = UserFactory(is_staff=True)
    client.force_login(staff)
    response = client.post(RELEASE, {"quantity": "1"}, content_type="application/json", HTTP_IDEMPOTENCY_KEY="s0")
    assert response.status_code == 404  # is_staff alone sees no other project and changes nothing
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["view_project", "change_quota"]))
    response = client.post(RELEASE, {"quantity": "1"}, content_type="application/json", HTTP_IDEMPOTENCY_KEY="s1")
    assert response.status_code == 200, response.json()
    assert used(platform) == "1"
