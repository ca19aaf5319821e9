"""Service keys: Bearer auth, revocation, project scope; sessions for people."""

from django.utils import timezone

from creditservice.testing.fixtures import ServiceClient
from wallets.auth import api_key_create, principal_for_key
from wallets.models import ApiKey
from wallets.tests.factories import ProjectFactory, member, scoped_key


def test_no_credentials_is_401_in_the_error_shape(anonymous, project):
    response = anonymous.get("/api/v1/projects/acme/wallet")
    assert response.status_code == 401
    assert response.json()["error"] == "unauthenticated"
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_an_unknown_key_is_401(project):
    response = ServiceClient("cs_not-a-real-key").get("/api/v1/projects/acme/wallet")
    assert response.status_code == 401
    assert response.json()["error"] == "unauthenticated"


def test_a_malformed_authorization_header_is_401(project):
    client = ServiceClient()
    client.credentials(HTTP_AUTHORIZATION="Basic abc")
    assert client.get("/api/v1/projects/acme/wallet").status_code == 401


def test_a_revoked_key_is_401(project):
    api_key, raw = api_key_create(name="old")
    assert ServiceClient(raw).get("/api/v1/projects/acme/wallet").status_code == 200
    # Revoked by another process (a different web worker, a shell): nothing here is told, and the key is
    # still refused on its next request.
    ApiKey.objects.filter(id=api_key.id).update(revoked_at=timezone.now())
    assert ServiceClient(raw).get("/api/v1/projects/acme/wallet").status_code == 401


def test_keys_are_stored_hashed_and_shown_once(db):
    api_key, raw = api_key_create(name="k")
    stored = ApiKey.objects.get(id=api_key.id)
    assert raw not in (stored.key_hash, stored.prefix, stored.name)
    assert raw.startswith(stored.prefix)
    assert principal_for_key(raw).api_key_id == api_key.id


def test_a_scoped_key_sees_its_project_and_404_for_others(db):
    mine = ProjectFactory(slug="mine", balance="1")
    ProjectFactory(slug="theirs", balance="1")
    client = ServiceClient(scoped_key(mine))
    assert client.get("/api/v1/projects/mine/wallet").status_code == 200
    response = client.get("/api/v1/projects/theirs/wallet")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    assert [p["slug"] for p in client.get("/api/v1/projects/").json()] == ["mine"]


def test_a_member_sees_only_their_projects(client, db):
    mine = ProjectFactory(slug="mine")
    ProjectFactory(slug="theirs")
    client.force_login(member(mine))
    assert [p["slug"] for p in client.get("/api/v1/projects/").json()] == ["mine"]
    assert client.get("/api/v1/projects/theirs/").status_code == 404
    assert client.get("/api/v1/projects/theirs/transactions").status_code == 404


def test_staff_see_every_project(admin_client, db):
    ProjectFactory(slug="a")
    ProjectFactory(slug="b")
    assert [p["slug"] for p in admin_client.get("/api/v1/projects/").json()] == ["a", "b"]
