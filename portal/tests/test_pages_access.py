"""Who sees what: login everywhere, a member sees only their own projects (404 for the rest), CSRF on forms."""

import pytest
from django.test import Client

from wallets.models import Membership
from wallets.tests.factories import ProjectFactory, UserFactory, member

pytestmark = pytest.mark.django_db

PORTAL_PAGES = [
    "/portal/",
    "/portal/acme/",
    "/portal/acme/topup/success?session_id=cs_test_1",
    "/portal/acme/topup/cancel",
    "/portal/acme/topup/status?session_id=cs_test_1",
]


@pytest.mark.parametrize("path", PORTAL_PAGES)
def test_every_portal_page_sends_anonymous_visitors_to_log_in(client, project, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_top_up_needs_a_login(client, project):
    response = client.post("/portal/acme/topup", {"amount": "10", "token": "t" * 24})
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_the_index_lists_only_the_users_projects_with_their_money(browser, project):
    ProjectFactory(slug="other-co", name="Other Co", balance="5")
    page = browser.get("/portal/").content.decode()
    assert "Acme" in page and "/portal/acme/" in page
    assert "100" in page
    assert "Other Co" not in page


def test_staff_see_their_own_memberships_not_every_project(client, project):
    staff = UserFactory(is_staff=True)
    ProjectFactory(slug="mine", name="Staff Project")
    member(ProjectFactory(slug="theirs", name="Theirs"), staff)
    client.force_login(staff)
    page = client.get("/portal/").content.decode()
    assert "Theirs" in page
    assert "Acme" not in page and "Staff Project" not in page


def test_a_user_without_projects_is_told_so(client, db):
    client.force_login(UserFactory())
    assert "not a member of any project" in client.get("/portal/").content.decode()


@pytest.mark.parametrize("path", [
    "/portal/other-co/",
    "/portal/other-co/topup/cancel",
    "/portal/other-co/topup/success?session_id=cs_x",
    "/portal/other-co/topup/status?session_id=cs_x",
    "/portal/no-such-project/",
])
def test_another_projects_pages_are_not_found(browser, project, path):
    ProjectFactory(slug="other-co", balance="5")
    assert browser.get(path).status_code == 404


def test_a_member_cannot_start_a_top_up_for_another_project(browser, project, settings):
    settings.STRIPE_SECRET_KEY = "sk_test_portal"
    ProjectFactory(slug="other-co")
    response = browser.post("/portal/other-co/topup", {"amount": "10", "token": "t" * 24})
    assert response.status_code == 404


def test_an_owner_sees_the_project_like_a_member(client, project):
    owner = member(ProjectFactory(slug="owned", name="Owned"), UserFactory(), role=Membership.Role.OWNER)
    client.force_login(owner)
    assert client.get("/portal/owned/").status_code == 200


def test_the_top_up_form_is_refused_without_a_csrf_token(project, tenant, settings):
    settings.STRIPE_SECRET_KEY = "sk_test_portal"
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(tenant)
    response = strict.post("/portal/acme/topup", {"amount": "10", "token": "t" * 24})
    assert response.status_code == 403


def test_every_portal_form_carries_a_csrf_token(project, tenant):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(tenant)
    page = strict.get("/portal/acme/").content.decode()
    # Logout, the preset form and the custom amount form.
    assert page.count("<form") == 3
    assert page.count('name="csrfmiddlewaretoken"') == 3


def test_logging_out_is_a_post_that_needs_csrf(project, tenant):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(tenant)
    assert strict.post("/accounts/logout/").status_code == 403
    assert strict.get("/portal/").status_code == 200
