"""The ledger's admin: a new API key is shown once on the answering page, never in a cookie or the session."""

import re

import pytest
from django.contrib.auth.models import Permission
from django.contrib.sessions.models import Session

from wallets.auth import principal_for_key
from wallets.models import ApiKey
from wallets.tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_a_new_api_key_is_shown_on_the_answering_page_and_never_in_a_cookie(admin_client):
    response = admin_client.post("/admin/wallets/apikey/add/", {"name": "gateway"})
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    raw = re.search(r"<code>(cs_[^<]+)</code>", response.content.decode()).group(1)
    assert principal_for_key(raw) is not None
    # The messages cookie is signed, not encrypted: the key must not travel in it, nor rest in the session.
    assert all(raw not in morsel.value for morsel in response.cookies.values())
    assert all(raw not in morsel.value for morsel in admin_client.cookies.values())
    assert all(raw not in str(session.get_decoded()) for session in Session.objects.all())
    # Shown once: no later page has it.
    key = ApiKey.objects.get(name="gateway")
    for url in ("/admin/wallets/apikey/", f"/admin/wallets/apikey/{key.pk}/change/", "/admin/"):
        assert raw not in admin_client.get(url).content.decode()


def test_a_staff_user_without_the_add_permission_cannot_make_a_key(client):
    user = UserFactory(is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__startswith="view_"))
    client.force_login(user)
    assert client.post("/admin/wallets/apikey/add/", {"name": "gateway"}).status_code == 403
    assert not ApiKey.objects.exists()
