"""GET/POST /projects/{slug}/grants and POST /grants/{id}/void: create, list, void, idempotent replays,
permissions, and the wallet read by grant category."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone
from rest_framework.test import APIClient

from creditservice.testing.invariants import assert_books_balance
from wallets.models import Grant, Transfer
from wallets.tests.factories import ProjectFactory, UserFactory, scoped_key

GRANTS = "/api/v1/projects/acme/grants"


def _iso(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def test_it_creates_lists_and_reads_back_a_grant(platform, project):
    expires = timezone.now() + timedelta(days=10)
    response = platform.post_idem(GRANTS, {"category": "promotional", "amount": "25.5", "priority": 5,
                                           "expires_at": _iso(expires), "resource_types": ["vm"], "reason": "launch"})
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["category"], body["amount"], body["remaining"], body["priority"], body["status"]) == (
        "promotional", "25.5", "25.5", 5, "active")
    assert body["resource_types"] == ["vm"]
    listed = platform.get(GRANTS).json()
    assert [g["id"] for g in listed] == [body["id"], listed[1]["id"]]
    assert listed[1]["category"] == "granted"  # the fixture's funding
    wallet = platform.get("/api/v1/projects/acme/wallet").json()
    assert wallet["grants"] == {"purchased": "0", "promotional": "25.5", "granted": "100"}
    assert wallet["expiring_within_30_days"] == "25.5"
    assert wallet["scoped_to_resource_types"] == "25.5"  # the promotion is for vm only
    assert wallet["balance"] == "125.5"
    assert_books_balance()


def test_a_replay_with_the_same_key_creates_one_grant(platform, project):
    body = {"category": "granted", "amount": "3", "reason": "goodwill"}
    first = platform.post_idem(GRANTS, body, key="grant-1")
    again = platform.post_idem(GRANTS, body, key="grant-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert Grant.objects.filter(category="granted", amount=3_000_000).count() == 1


def test_a_scheduled_grant_reads_as_scheduled_and_adds_nothing_available(platform, project):
    body = platform.post_idem(GRANTS, {"category": "promotional", "amount": "7", "reason": "next month",
                                       "effective_at": _iso(timezone.now() + timedelta(days=3))}).json()
    assert body["status"] == "scheduled"
    wallet = platform.get("/api/v1/projects/acme/wallet").json()
    assert (wallet["balance"], wallet["available"]) == ("107", "100")


def test_void_takes_the_rest_and_a_replay_voids_once(platform, project):
    grant = platform.post_idem(GRANTS, {"category": "promotional", "amount": "10", "reason": "r"}).json()
    void = f"/api/v1/grants/{grant['id']}/void"
    first = platform.post_idem(void, {"reason": "abuse"}, key="void-1")
    again = platform.post_idem(void, {"reason": "abuse"}, key="void-1")
    assert first.status_code == again.status_code == 200, first.json()
    assert (first.json()["status"], first.json()["remaining"]) == ("voided", "0")
    assert again.json() == first.json()
    assert Transfer.objects.filter(kind=Transfer.Kind.GRANT_VOID).count() == 1
    assert platform.get("/api/v1/projects/acme/wallet").json()["balance"] == "100"
    assert_books_balance()


def test_a_void_without_a_reason_is_refused(platform, project):
    grant_id = Grant.objects.get().id
    response = platform.post_idem(f"/api/v1/grants/{grant_id}/void", {})
    assert response.status_code == 400
    assert response.json()["error"] == "validation_error"
    assert Grant.objects.get().closed_at is None


def test_an_expired_grant_reads_expired_at_once(platform, project):
    import time_machine

    grant = platform.post_idem(GRANTS, {"category": "promotional", "amount": "4", "reason": "r",
                                        "expires_at": _iso(timezone.now() + timedelta(hours=1))}).json()
    with time_machine.travel(timezone.now() + timedelta(hours=2)):
        listed = {g["id"]: g for g in platform.get(GRANTS).json()}
        assert (listed[grant["id"]]["status"], listed[grant["id"]]["remaining"]) == ("expired", "0")
        wallet = platform.get("/api/v1/projects/acme/wallet").json()
        assert (wallet["available"], wallet["grants"]["promotional"]) == ("100", "0")
        response = platform.post_idem(f"/api/v1/grants/{grant['id']}/void", {"reason": "late"})
        assert response.status_code == 409


def _staff(*perms: str):
    user = UserFactory(is_staff=True)
    for name in perms:
        app_label, codename = name.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    client = APIClient()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_view_only_staff_cannot_create_or_void():
    ProjectFactory(slug="acme", balance="10")
    client = _staff("wallets.view_project", "wallets.view_grant")
    assert client.get(GRANTS).status_code == 200
    response = client.post(GRANTS, {"category": "granted", "amount": "1", "reason": "r"}, format="json",
                           HTTP_IDEMPOTENCY_KEY="v1")
    assert response.status_code == 403
    assert "wallets.add_grant" in response.json()["detail"]
    response = client.post(f"/api/v1/grants/{Grant.objects.get().id}/void", {"reason": "r"}, format="json",
                           HTTP_IDEMPOTENCY_KEY="v2")
    assert response.status_code == 403
    assert Grant.objects.count() == 1 and Grant.objects.get().closed_at is None


@pytest.mark.django_db
def test_staff_with_the_permissions_create_and_void():
    ProjectFactory(slug="acme")
    client = _staff("wallets.view_project", "wallets.add_grant", "wallets.void_grant")
    created = client.post(GRANTS, {"category": "granted", "amount": "1", "reason": "r"}, format="json",
                          HTTP_IDEMPOTENCY_KEY="s1")
    assert created.status_code == 201, created.json()
    assert created.json()["actor"].startswith("user:")
    voided = client.post(f"/api/v1/grants/{created.json()['id']}/void", {"reason": "r"}, format="json",
                         HTTP_IDEMPOTENCY_KEY="s2")
    assert voided.status_code == 200


@pytest.mark.django_db
def test_a_project_key_reads_its_grants_but_creates_none():
    from creditservice.testing.fixtures import ServiceClient

    project = ProjectFactory(slug="acme", balance="10")
    client = ServiceClient(scoped_key(project))
    assert len(client.get(GRANTS).json()) == 1
    assert client.post_idem(GRANTS, {"category": "granted", "amount": "1", "reason": "r"}).status_code == 403
