"""Log in, log out and password reset through the configured email backend, with the portal's templates."""

import re

import pytest
from django.core import mail

from wallets.tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_the_login_page_is_the_portals(client):
    page = client.get("/accounts/login/").content.decode()
    assert "<h1" in page and "Log in" in page
    assert 'for="id_username"' in page and 'for="id_password"' in page
    assert "portal.css" in page


def test_logging_in_leads_to_the_projects(client, project):
    UserFactory(username="ann")
    response = client.post("/accounts/login/", {"username": "ann", "password": "pw-for-tests-1"})
    assert response.status_code == 302
    assert response["Location"] == "/portal/"


def test_a_wrong_password_is_refused_with_a_message(client):
    UserFactory(username="ann")
    response = client.post("/accounts/login/", {"username": "ann", "password": "wrong"})
    assert response.status_code == 200
    assert 'role="alert"' in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_logging_out_ends_the_session(client):
    client.force_login(UserFactory())
    response = client.post("/accounts/logout/")
    assert response.status_code == 302
    assert client.get("/portal/").status_code == 302


def test_a_password_can_be_reset_by_email(client):
    UserFactory(username="ann", email="ann@example.com")
    response = client.post("/accounts/password_reset/", {"email": "ann@example.com"})
    assert response.status_code == 302
    assert "Check your email" in client.get(response["Location"]).content.decode()
    assert len(mail.outbox) == 1
    assert mail.outbox[0].subject == "Reset your creditservice password"
    link = re.search(r"http://testserver(/accounts/reset/\S+)", mail.outbox[0].body).group(1)
    form_page = client.get(link, follow=True)
    assert "Choose a new password" in form_page.content.decode()
    done = client.post(form_page.redirect_chain[-1][0], {"new_password1": "a-new-long-pass-42", "new_password2": "a-new-long-pass-42"})
    assert done.status_code == 302
    assert "Your password is changed" in client.get(done["Location"]).content.decode()
    # Through the login page: the sign-in throttle (django-axes) needs the request.
    assert client.post("/accounts/login/", {"username": "ann", "password": "a-new-long-pass-42"}).status_code == 302


def test_an_unknown_email_sends_nothing_but_looks_the_same(client):
    response = client.post("/accounts/password_reset/", {"email": "nobody@example.com"})
    assert response.status_code == 302
    assert mail.outbox == []
