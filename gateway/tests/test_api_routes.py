"""GET/POST /api/v1/gateway/routes: the metered routes, for platform keys and staff with the gateway permissions."""

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from rest_framework.test import APIClient

from creditservice.testing.fixtures import ServiceClient
from gateway.models import MeteredRoute
from wallets.tests.factories import ProjectFactory, UserFactory, platform_key, scoped_key

from .helpers import authorize

pytestmark = pytest.mark.django_db

ROUTES = "/api/v1/gateway/routes"
BODY = {"method": "POST", "path_prefix": "/v1/chat", "resource_type": "api_call", "price": "0.002"}


def test_a_platform_key_adds_a_route_that_is_charged_at_once():
    platform = ServiceClient(platform_key())
    response = platform.post_idem(ROUTES, BODY)
    assert response.status_code == 201, response.json()
    assert response.json() | {"id": 0, "created_at": ""} == {**BODY, "id": 0, "created_at": ""}
    assert platform.get(ROUTES).json()[0]["price"] == "0.002"
    acme = ProjectFactory(slug="acme", balance="1")
    answer = authorize(Client(), scoped_key(acme), "/v1/chat/completions", method="POST")
    assert answer["X-Credits-Charged"] == "0.002"


def test_a_retry_with_the_same_idempotency_key_replays_and_another_key_is_a_409():
    platform = ServiceClient(platform_key())
    first = platform.post_idem(ROUTES, BODY, key="route-1")
    again = platform.post_idem(ROUTES, BODY, key="route-1")
    assert again.status_code == 201 and again.json() == first.json()
    duplicate = platform.post_idem(ROUTES, BODY, key="route-2")
    assert duplicate.status_code == 409 and duplicate.json()["error"] == "route_exists"
    assert MeteredRoute.objects.count() == 1


def test_without_an_idempotency_key_it_is_a_400():
    response = ServiceClient(platform_key()).post(ROUTES, BODY, format="json")
    assert response.status_code == 400 and "Idempotency-Key" in response.json()["detail"]


@pytest.mark.parametrize(("change", "field"), [
    ({"price": "0"}, "price"), ({"price": "1000000000000.000001"}, "price"), ({"price": 1}, "price"),
    ({"path_prefix": "v1"}, "path_prefix"), ({"path_prefix": "/v1//x"}, "path_prefix"),
    ({"method": "FETCH"}, "method"), ({"resource_type": "vm"}, "resource_type"), ({"extra": 1}, "extra"),
])
def test_an_invalid_route_is_a_400_in_the_error_shape(change, field):
    response = ServiceClient(platform_key()).post_idem(ROUTES, {**BODY, **change})
    assert response.status_code == 400, response.json()
    assert response.json()["error"] == "validation_error" and field in response.json()["detail"]
    assert not MeteredRoute.objects.exists()


def test_an_unknown_resource_type_is_a_404():
    response = ServiceClient(platform_key()).post_idem(ROUTES, {**BODY, "resource_type": "nosuch"})
    assert response.status_code == 404


def test_a_project_key_may_neither_read_nor_add_routes():
    client = ServiceClient(scoped_key(ProjectFactory(slug="acme")))
    assert client.get(ROUTES).status_code == 403
    assert client.post_idem(ROUTES, BODY).status_code == 403


def test_staff_need_the_gateway_permissions():
    user = UserFactory(is_staff=True)
    client = APIClient()
    client.force_login(user)
    assert client.get(ROUTES).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_meteredroute"))
    client.force_login(user)
    assert client.get(ROUTES).status_code == 200
    assert client.post(ROUTES, BODY, format="json", HTTP_IDEMPOTENCY_KEY="s1").status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="add_meteredroute"))
    client.force_login(user)
    assert client.post(ROUTES, BODY, format="json", HTTP_IDEMPOTENCY_KEY="s2").status_code == 201
