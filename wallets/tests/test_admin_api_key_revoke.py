"""API keys are revoked, never deleted: a deleted key would lose who "api_key:1" was in every transfer's actor.
The key's page has a Revoke button; a revoked key is refused at once, by every process."""

import pytest
from django.contrib.auth.models import Permission

from creditservice.testing.fixtures import ServiceClient
from wallets.auth import api_key_create
from wallets.models import ApiKey, Transfer
from wallets.tests.factories import ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_staff_revoke_a_key_from_its_page_and_it_is_refused_at_once(admin_client, admin_user):
    ProjectFactory(slug="acme", balance="10")
    key, raw = api_key_create(name="gateway")
    caller = ServiceClient(raw)
    assert caller.get("/api/v1/projects/acme/wallet").status_code == 200  # the key was in use

    page = admin_client.get(f"/admin/wallets/apikey/{key.pk}/change/").content.decode()
    assert "Revoke key" in page and "wallets.change_apikey" in page
    confirm = admin_client.get(f"/admin/wallets/apikey/{key.pk}/revoke/")
    assert confirm.status_code == 200 and ApiKey.objects.get(pk=key.pk).revoked_at is None  # asking is not revoking

    response = admin_client.post(f"/admin/wallets/apikey/{key.pk}/revoke/")
    assert response.status_code == 302
    key.refresh_from_db()
    assert key.revoked_at is not None and key.revoked_by == f"user:{admin_user.pk}"
    assert caller.get("/api/v1/projects/acme/wallet").status_code == 401
    page = admin_client.get(f"/admin/wallets/apikey/{key.pk}/change/").content.decode()
    assert f"by user:{admin_user.pk}" in page and "Revoke key</a>" not in page


def test_revoking_twice_keeps_the_first_who_and_when(admin_client, admin_user):
    key, _ = api_key_create(name="gateway")
    admin_client.post(f"/admin/wallets/apikey/{key.pk}/revoke/")
    first = ApiKey.objects.get(pk=key.pk).revoked_at
    other = UserFactory(is_staff=True, is_superuser=True)
    admin_client.force_login(other)
    response = admin_client.post(f"/admin/wallets/apikey/{key.pk}/revoke/", follow=True)
    assert "already revoked" in response.content.decode()
    key.refresh_from_db()
    assert (key.revoked_at, key.revoked_by) == (first, f"user:{admin_user.pk}")


def test_a_key_revoked_by_another_process_is_refused_on_its_next_request(project):
    key, raw = api_key_create(name="gateway")
    caller = ServiceClient(raw)
    assert caller.get("/api/v1/projects/acme/wallet").status_code == 200
    # Another web worker (or a shell) revokes it: this process is not told, and holds no copy to run out.
    ApiKey.objects.filter(pk=key.pk).update(revoked_at="2026-01-01T00:00:00Z", revoked_by="user:1")
    assert caller.get("/api/v1/projects/acme/wallet").status_code == 401


def test_the_revoke_action_records_who(admin_client, admin_user):
    keys = [api_key_create(name=f"k{i}")[0] for i in range(2)]
    response = admin_client.post("/admin/wallets/apikey/", {"action": "revoke", "_selected_action": [k.pk for k in keys]})
    assert response.status_code == 302
    assert set(ApiKey.objects.values_list("revoked_by", flat=True)) == {f"user:{admin_user.pk}"}


def test_a_key_cannot_be_deleted_nor_bulk_deleted(admin_client):
    ProjectFactory(slug="acme", balance="10")
    key, raw = api_key_create(name="gateway")
    assert ServiceClient(raw).post_idem("/api/v1/projects/acme/wallet/debit", {"amount": "1", "reason": "test"}).status_code == 201
    assert Transfer.objects.filter(actor=f"api_key:{key.pk}").exists()

    assert admin_client.post(f"/admin/wallets/apikey/{key.pk}/delete/", {"post": "yes"}).status_code == 403
    listing = admin_client.get("/admin/wallets/apikey/").content.decode()
    assert "delete_selected" not in listing and 'value="revoke"' in listing
    admin_client.post("/admin/wallets/apikey/", {"action": "delete_selected", "_selected_action": [key.pk], "post": "yes"})
    assert ApiKey.objects.filter(pk=key.pk).exists()
    assert "Delete" not in admin_client.get(f"/admin/wallets/apikey/{key.pk}/change/").content.decode().split(
        'class="submit-row"')[-1].split("</div>")[0]


def test_staff_without_the_permission_see_no_revoke_and_are_refused(client):
    key, raw = api_key_create(name="gateway")
    viewer = UserFactory(is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_apikey"))
    client.force_login(viewer)
    assert client.post(f"/admin/wallets/apikey/{key.pk}/revoke/").status_code == 403
    assert ApiKey.objects.get(pk=key.pk).revoked_at is None
