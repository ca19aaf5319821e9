"""GET/POST /api/v1/projects/ and GET /api/v1/projects/{slug}/."""

from creditservice.testing.fixtures import ServiceClient
from wallets.models import Account, Project
from wallets.tests.factories import member, scoped_key


def test_a_platform_key_creates_a_project_with_its_wallet(platform):
    response = platform.post("/api/v1/projects/", {"slug": "new-co", "name": "New Co"}, format="json")
    assert response.status_code == 201
    assert response.json()["slug"] == "new-co"
    assert response.json()["status"] == "active"
    project = Project.objects.get(slug="new-co")
    assert Account.objects.get(project=project).balance == 0
    assert platform.get("/api/v1/projects/new-co/wallet").json()["balance"] == "0"


def test_a_duplicate_slug_is_409(platform, project):
    response = platform.post("/api/v1/projects/", {"slug": "acme", "name": "Again"}, format="json")
    assert response.status_code == 409
    assert response.json()["error"] == "project_exists"


def test_bad_slugs_and_unknown_fields_are_400(platform, db):
    for body in ({"slug": "Not A Slug!", "name": "x"}, {"slug": "ok"}, {"slug": "ok", "name": "x", "balance": "5"}):
        response = platform.post("/api/v1/projects/", body, format="json")
        assert response.status_code == 400, body
        assert response.json()["error"] == "validation_error"
    assert not Project.objects.exists()


def test_scoped_keys_and_members_cannot_create_projects(client, project):
    assert ServiceClient(scoped_key(project)).post("/api/v1/projects/", {"slug": "x", "name": "x"}, format="json").status_code == 403
    client.force_login(member(project))
    assert client.post("/api/v1/projects/", {"slug": "x", "name": "x"}, content_type="application/json").status_code == 403
    assert not Project.objects.filter(slug="x").exists()


def test_project_detail(platform, project):
    body = platform.get("/api/v1/projects/acme/").json()
    assert body["slug"] == "acme" and body["name"] == "Acme"


def test_healthz_answers_without_the_database(client):
    # No db fixture: pytest-django fails this test if the view touches the database.
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_the_openapi_schema_and_docs_are_served(client, db):
    schema = client.get("/api/schema/")
    assert schema.status_code == 200
    assert b"/api/v1/projects/{slug}/wallet/credit" in schema.content
    assert client.get("/api/docs/").status_code == 200


def test_unknown_api_paths_are_404_in_the_error_shape(platform, db):
    response = platform.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
