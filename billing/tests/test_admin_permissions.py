"""Outbound webhook signing secrets: shown once when an endpoint is made, then only to staff who may change
endpoints; a view-only user sees them masked (the secret lets anyone forge our deliveries)."""

import pytest
from django.contrib.auth.models import Permission

from billing.models import WebhookEndpoint
from wallets.tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _staff(*codenames: str):
    user = UserFactory(is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="billing", codename__in=codenames))
    return user


def test_a_view_only_staff_user_sees_the_signing_secret_masked(client):
    endpoint = WebhookEndpoint.objects.create(url="https://hooks.example.com/in")
    client.force_login(_staff("view_webhookendpoint"))
    page = client.get(f"/admin/billing/webhookendpoint/{endpoint.pk}/change/").content.decode()
    assert page.count("hooks.example.com") >= 1
    assert endpoint.secret not in page
    assert "hidden: reading it needs the billing.change_webhookendpoint permission" in page
    assert endpoint.secret not in client.get("/admin/billing/webhookendpoint/").content.decode()


def test_staff_who_may_change_endpoints_read_the_secret_and_never_type_it(client):
    endpoint = WebhookEndpoint.objects.create(url="https://hooks.example.com/in")
    client.force_login(_staff("view_webhookendpoint", "change_webhookendpoint"))
    page = client.get(f"/admin/billing/webhookendpoint/{endpoint.pk}/change/").content.decode()
    assert endpoint.secret in page
    assert 'name="secret"' not in page


def test_a_new_endpoints_secret_is_shown_on_the_answering_page(client):
    client.force_login(_staff("add_webhookendpoint", "view_webhookendpoint"))
    response = client.post("/admin/billing/webhookendpoint/add/", {
        "url": "https://hooks.example.com/new", "enabled": "on", "description": "",
    })
    assert response.status_code == 200, response.content.decode()[:2000]
    endpoint = WebhookEndpoint.objects.get(url="https://hooks.example.com/new")
    assert endpoint.secret in response.content.decode()
    assert "no-store" in response["Cache-Control"]
    # Without the change permission it is not shown again.
    assert endpoint.secret not in client.get(f"/admin/billing/webhookendpoint/{endpoint.pk}/change/").content.decode()
