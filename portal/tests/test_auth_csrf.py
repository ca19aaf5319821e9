"""CSRF is enforced on every form that signs in or changes something, and on the API for a signed-in user
(a session cookie alone must not move anything; an API key needs no CSRF token)."""

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from creditservice.testing.fixtures import ServiceClient
from wallets.tests.factories import UserFactory, platform_key

pytestmark = pytest.mark.django_db


def test_signing_in_needs_the_csrf_token(db):
    UserFactory(username="ann")
    strict = Client(enforce_csrf_checks=True)
    assert strict.post("/accounts/login/", {"username": "ann", "password": "pw-for-tests-1"}).status_code == 403
    assert "_auth_user_id" not in strict.session


def test_signing_in_with_the_token_works(db):
    UserFactory(username="ann")
    strict = Client(enforce_csrf_checks=True)
    strict.get("/accounts/login/")
    token = strict.cookies["csrftoken"].value
    response = strict.post("/accounts/login/", {"username": "ann", "password": "pw-for-tests-1",
                                                "csrfmiddlewaretoken": token})
    assert response.status_code == 302


def test_a_password_reset_request_needs_the_csrf_token(db):
    assert Client(enforce_csrf_checks=True).post("/accounts/password_reset/", {"email": "a@example.com"}).status_code == 403


def test_the_api_refuses_a_session_write_without_the_csrf_token(project):
    staff = UserFactory(is_staff=True)
    staff.user_permissions.add(*Permission.objects.filter(codename__in=["view_project", "add_transfer"]))
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(staff)
    response = strict.post("/api/v1/projects/acme/wallet/credit", {"amount": "1", "reason": "r"},
                           content_type="application/json", HTTP_IDEMPOTENCY_KEY="c1")
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden" and "CSRF" in str(response.json()["detail"])
    assert ServiceClient(platform_key()).get("/api/v1/projects/acme/wallet").json()["balance"] == "100"


def test_an_api_key_needs_no_csrf_token(project):
    key = ServiceClient(platform_key(), enforce_csrf_checks=True)
    response = key.post_idem("/api/v1/projects/acme/wallet/credit", {"amount": "1", "reason": "r"})
    assert response.status_code == 201
