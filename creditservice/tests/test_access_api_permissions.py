"""The API honours the staff's Django model permissions, the ones the admin checks (wallets/access.py).

Every write endpoint of the URL conf is in the table below (test_every_write_endpoint_states_who_may_write),
so a new one cannot be left out. For each: a staff user who may only view gets 403 forbidden in the error
shape and nothing is written; a staff user with the endpoint's permission (and nothing else that writes)
is let through.
"""

import json
from dataclasses import dataclass

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone
from rest_framework.test import APIClient

from billing.models import ThresholdAlert
from creditservice.testing.fixtures import ServiceClient
from creditservice.testing.routes import api_routes
from creditservice.testing.snapshots import money_snapshot
from quotas.selectors import clear_caches
from wallets import access
from wallets.models import Grant, Project
from wallets.tests.factories import ProjectFactory, UserFactory, platform_key

pytestmark = pytest.mark.django_db

PROJECT = "/api/v1/projects/acme"


@dataclass(frozen=True)
class Write:
    route: str
    method: str
    path: str
    body: dict
    operation: access.Operation
    status: int = 200


def _usage() -> dict:
    return {"events": [{"id": "perm-1", "project": "acme", "resource_type": "vm", "quantity": "1",
                        "timestamp": timezone.now().isoformat()}]}


WRITES = [
    Write("project-list", "POST", "/api/v1/projects/", {"slug": "new-co", "name": "New Co"}, access.PROJECT_CREATE, 201),
    Write("wallet-credit", "POST", f"{PROJECT}/wallet/credit", {"amount": "1000000", "reason": "r"},
          access.CREDITS_MOVE, 201),
    Write("wallet-debit", "POST", f"{PROJECT}/wallet/debit", {"amount": "1", "reason": "r"}, access.CREDITS_MOVE, 201),
    Write("quota-detail", "PUT", f"{PROJECT}/quotas/vm", {"limit": "1000"}, access.QUOTA_SET),
    Write("quota-release", "POST", f"{PROJECT}/quotas/vm/release", {"quantity": "1"}, access.QUOTA_RELEASE),
    Write("budget", "PUT", f"{PROJECT}/budget", {"hard_limit": None}, access.BUDGET_SET),
    Write("reservation-create", "POST", "/api/v1/reservations",
          {"project": "acme", "resource_type": "vm", "quantity": "1", "amount": "1"}, access.RESERVATION_CREATE, 201),
    Write("reservation-commit", "POST", "/api/v1/reservations/{reservation}/commit", {}, access.RESERVATION_SETTLE),
    Write("reservation-release", "POST", "/api/v1/reservations/{reservation}/release", {}, access.RESERVATION_SETTLE),
    Write("usage-events", "POST", "/api/v1/usage/events", {}, access.USAGE_REPORT),
    Write("gateway-routes", "POST", "/api/v1/gateway/routes",
          {"method": "GET", "path_prefix": "/v1/x", "resource_type": "api_call", "price": "0.5"},
          access.GATEWAY_ROUTE_CREATE, 201),
    Write("project-alerts", "POST", f"{PROJECT}/alerts", {"metric": "budget", "level": "info", "threshold": "80"},
          access.ALERT_CREATE, 201),
    Write("alert-detail", "DELETE", "/api/v1/alerts/{alert}", {}, access.ALERT_DELETE, 204),
    Write("grants", "POST", f"{PROJECT}/grants", {"category": "promotional", "amount": "5", "reason": "r"},
          access.GRANT_CREATE, 201),
    Write("grant-void", "POST", "/api/v1/grants/{grant}/void", {"reason": "r"}, access.GRANT_VOID),
]

# Writes that need no staff permission, and why.
OPEN_WRITES = {
    ("admission-check", "POST"): "writes nothing: it answers whether a reservation would be admitted",
    ("checkout-session-list", "POST"): "starts a card payment by whoever pays; credits move only once Stripe says paid",
    ("stripe-webhook", "POST"): "authenticated by Stripe's signature, not by a user",
    # Envoy's ext_authz asks with the original call's method.
    **{(route, method): "the gateway's subrequest: a project key (never a session) charges its own project"
       for route in ("gateway-authorize", "gateway-authorize-path") for method in ("POST", "PUT", "PATCH", "DELETE")},
}


def test_every_write_endpoint_states_who_may_write():
    written = {(route.name, method) for route in api_routes() if route.takes_writes
               for method in (route.methods or {"POST"}) if method != "GET"}
    stated = {(write.route, write.method) for write in WRITES} | set(OPEN_WRITES)
    assert written - stated == set(), "a write endpoint without a stated permission"
    assert stated - written == set(), "a stated endpoint that is no longer in the URL conf"


def test_every_stated_permission_exists():
    """A misspelt codename would refuse every staff user, superusers aside."""
    operations = [value for value in vars(access).values() if isinstance(value, access.Operation)]
    assert len(operations) >= 15
    for operation in operations:
        for name in operation.permissions:
            app_label, codename = name.split(".")
            assert Permission.objects.filter(content_type__app_label=app_label, codename=codename).exists(), name


def _staff(*names: str):
    user = UserFactory(is_staff=True)
    for name in names:
        app_label, codename = name.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return user


def view_only_staff():
    user = UserFactory(is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__startswith="view_"))
    return user


@pytest.fixture
def world():
    """acme, funded, with a pending reservation; returns its id."""
    clear_caches()
    ProjectFactory(slug="acme", balance="100")
    platform = ServiceClient(platform_key())
    response = platform.post_idem("/api/v1/reservations",
                                  {"project": "acme", "resource_type": "vm", "quantity": "1", "amount": "1"})
    assert response.status_code == 201, response.json()
    yield response.json()["id"]
    clear_caches()


_keys = iter(range(10**9))


def _acme_id() -> int:
    return Project.objects.get(slug="acme").id


def _send(user, write: Write, reservation_id: int):
    client = APIClient()
    client.force_login(user)
    body = _usage() if write.route == "usage-events" else write.body
    path = write.path.replace("{reservation}", str(reservation_id))
    if "{grant}" in path:  # the grant of acme's funding
        path = path.replace("{grant}", str(Grant.objects.filter(wallet__project__slug="acme").values_list("id", flat=True)[0]))
    if "{alert}" in path:
        alert = ThresholdAlert.objects.create(project_id=_acme_id(), metric="budget", threshold=90)
        path = path.replace("{alert}", str(alert.id))
    send = {"PUT": client.put, "POST": client.post, "DELETE": client.delete}[write.method]
    return send(path, json.dumps(body), content_type="application/json", HTTP_IDEMPOTENCY_KEY=f"perm-{next(_keys)}")


@pytest.mark.parametrize("write", WRITES, ids=lambda w: f"{w.route}-{w.method}")
def test_a_view_only_staff_user_is_refused_and_nothing_is_written(world, write):
    before = money_snapshot()
    response = _send(view_only_staff(), write, world)
    assert response.status_code == 403, response.content
    body = response.json()
    assert body["error"] == "forbidden"
    assert write.operation.permissions[0] in body["detail"], body
    assert money_snapshot() == before


@pytest.mark.parametrize("write", WRITES, ids=lambda w: f"{w.route}-{w.method}")
def test_a_staff_user_with_the_permission_is_allowed(world, write):
    response = _send(_staff("wallets.view_project", *write.operation.permissions), write, world)
    assert response.status_code == write.status, response.content
    if write.route == "usage-events":
        assert response.json()["accepted"] == 1, response.json()


def test_a_view_only_staff_user_cannot_credit_a_million(world):
    """The review's case: the admin's form refuses such a user; the API did not."""
    response = _send(view_only_staff(), WRITES[1], world)
    assert response.status_code == 403
    assert "wallets.add_transfer" in response.json()["detail"]
    assert ServiceClient(platform_key()).get(f"{PROJECT}/wallet").json()["balance"] == "100"


def test_staff_without_view_project_see_only_their_own_projects(world):
    client = APIClient()
    client.force_login(UserFactory(is_staff=True))
    assert client.get("/api/v1/projects/").json() == []
    assert client.get(f"{PROJECT}/wallet").status_code == 404
    client.force_login(view_only_staff())
    assert [p["slug"] for p in client.get("/api/v1/projects/").json()] == ["acme"]
    assert client.get(f"{PROJECT}/wallet").status_code == 200


def test_a_superuser_may_do_everything(world):
    superuser = UserFactory(is_staff=True, is_superuser=True)
    assert all(access.may(superuser, value) for value in vars(access).values() if isinstance(value, access.Operation))
