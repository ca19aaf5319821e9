"""`/`, the address `make run` prints, leads somewhere: staff to the admin, everyone else to the portal."""

import pytest

from wallets.tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_a_signed_out_visitor_is_sent_to_the_portal_and_asked_to_sign_in(client):
    response = client.get("/", follow=True)
    assert response.redirect_chain[0] == ("/portal/", 302)
    assert response.request["PATH_INFO"] == "/accounts/login/"
    assert response.status_code == 200


def test_a_tenant_is_sent_to_the_portal(client):
    client.force_login(UserFactory())
    response = client.get("/")
    assert (response.status_code, response["Location"]) == (302, "/portal/")
    assert client.get("/portal/").status_code == 200


def test_staff_are_sent_to_the_admin(client):
    client.force_login(UserFactory(is_staff=True))
    response = client.get("/")
    assert (response.status_code, response["Location"]) == (302, "/admin/")


def test_the_home_address_only_answers_reads(client):
    assert client.post("/").status_code == 405
    assert client.head("/").status_code == 302
