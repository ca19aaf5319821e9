"""Staff screens: metered routes by the gateway permissions; charges read-only."""

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from gateway.models import GatewayCharge, MeteredRoute
from quotas.models import ResourceType
from wallets.tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _staff(*codenames: str) -> Client:
    user = UserFactory(is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def test_staff_with_add_meteredroute_add_a_route_with_its_price_in_credits():
    client = _staff("add_meteredroute", "view_meteredroute")
    api_call = ResourceType.objects.get(code="api_call")
    response = client.post("/admin/gateway/meteredroute/add/", {
        "method": "*", "path_prefix": "/v1/", "resource_type": api_call.id, "price": "0.002"})
    assert response.status_code == 302, response.content[:2000]
    assert MeteredRoute.objects.get().price == 2_000


def test_a_prefix_that_is_not_normalized_is_refused_in_the_admin_too():
    client = _staff("add_meteredroute", "view_meteredroute")
    api_call = ResourceType.objects.get(code="api_call")
    response = client.post("/admin/gateway/meteredroute/add/", {
        "method": "*", "path_prefix": "/v1//x", "resource_type": api_call.id, "price": "1"})
    assert response.status_code == 200 and not MeteredRoute.objects.exists()


def test_view_only_staff_cannot_add_routes_and_nobody_edits_charges():
    client = _staff("view_meteredroute", "view_gatewaycharge")
    assert client.get("/admin/gateway/meteredroute/add/").status_code == 403
    assert client.get("/admin/gateway/gatewaycharge/").status_code == 200
    superuser = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(superuser)
    assert client.get("/admin/gateway/gatewaycharge/add/").status_code == 403
    assert not GatewayCharge.objects.exists()
