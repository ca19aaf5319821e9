"""Tenant isolation on every endpoint: project A's scoped key, and a member of A (through the API with its
portal sign-in, and through the portal's pages), against project B's wallet, transactions, reservations,
quotas, budget, usage, charges and checkout sessions → 404 (B's existence is not revealed: the answer is
the one for a project that does not exist), and nothing is written. The operations that are staff's or
the platform's are refused to A's key and A's members on A itself (403).

The routes come from the URL conf (test_every_route_is_in_the_isolation_table), so a new endpoint
cannot be left out.
"""

import json
from dataclasses import dataclass

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from billing.models import ThresholdAlert
from creditservice.testing.fixtures import ServiceClient
from creditservice.testing.routes import api_routes, url_routes
from creditservice.testing.snapshots import money_snapshot
from payments.models import CheckoutSession
from quotas.selectors import clear_caches
from quotas.tests.helpers import set_quota
from wallets.models import Grant
from wallets.tests.factories import ProjectFactory, member, platform_key, scoped_key

pytestmark = pytest.mark.django_db

A, B, NOBODY = "acme", "globex", "no-such-project"

# Routes that hold no tenant's data, and why.
NOT_A_TENANTS = {
    "healthz": "liveness only",
    "readyz": "readiness: the service's own dependencies, no tenant's data",
    "home": "a redirect to the admin or the portal, which check who is signed in",
    "metrics": "aggregate counters with no tenant label (METRICS_TOKEN guards it)",
    "schema": "the API's description",
    "api-docs": "the API's description",
    "stripe-webhook": "authenticated by Stripe's signature; the event names its own top-up",
    # gateway/tests/test_api_authorize.py: test_a_key_charges_only_its_own_project.
    "gateway-authorize": "the gateway's subrequest: it charges the project of the key it forwards; none can be named",
    "gateway-authorize-path": "the gateway's subrequest: it charges the project of the key it forwards; none can be named",
}


@dataclass(frozen=True)
class Probe:
    route: str
    method: str
    path: str  # {project}: B (or a project that does not exist); {reservation}, {session}: B's
    body: dict | None = None
    key: int = 404  # what A's scoped key gets
    member: int = 404  # what a member of A gets through the API


def _usage_body(project: str) -> dict:
    return {"events": [{"id": f"iso-{project}", "project": project, "resource_type": "vm", "quantity": "1",
                        "timestamp": timezone.now().isoformat()}]}


P = "/api/v1/projects/{project}"
GATEWAY_ROUTE = {"method": "GET", "path_prefix": "/v1/x", "resource_type": "api_call", "price": "1"}
ALERT = {"metric": "budget", "level": "info", "threshold": "80"}
GRANT = {"category": "promotional", "amount": "5", "reason": "r"}
PROBES = [
    Probe("project-detail", "GET", f"{P}/"),
    Probe("wallet", "GET", f"{P}/wallet"),
    Probe("transactions", "GET", f"{P}/transactions"),
    Probe("wallet-credit", "POST", f"{P}/wallet/credit", {"amount": "1000000", "reason": "r"}),
    Probe("wallet-debit", "POST", f"{P}/wallet/debit", {"amount": "1", "reason": "r"}),
    Probe("admission-check", "POST", "/api/v1/admission/check",
          {"project": "{project}", "resource_type": "vm", "quantity": "1", "amount": "1"}),
    Probe("reservation-create", "POST", "/api/v1/reservations",
          {"project": "{project}", "resource_type": "vm", "quantity": "1", "amount": "1"}),
    Probe("reservation-detail", "GET", "/api/v1/reservations/{reservation}"),
    # A member may settle no reservation at all: refused before any lookup.
    Probe("reservation-commit", "POST", "/api/v1/reservations/{reservation}/commit", {}, member=403),
    Probe("reservation-release", "POST", "/api/v1/reservations/{reservation}/release", {}, member=403),
    Probe("project-reservations", "GET", f"{P}/reservations"),
    Probe("quota-list", "GET", f"{P}/quotas"),
    Probe("quota-detail", "GET", f"{P}/quotas/vm"),
    Probe("quota-detail", "PUT", f"{P}/quotas/vm", {"limit": "1000"}),
    Probe("quota-release", "POST", f"{P}/quotas/vm/release", {"quantity": "1"}),
    Probe("budget", "GET", f"{P}/budget"),
    Probe("budget", "PUT", f"{P}/budget", {"hard_limit": None}),
    # A batch answers per event: B's event is rejected as unknown_project (200), nothing stored.
    Probe("usage-events", "POST", "/api/v1/usage/events", {}, key=200, member=403),
    Probe("charges", "GET", f"{P}/charges"),
    Probe("statement", "GET", f"{P}/statements/{timezone.now():%Y-%m}"),
    Probe("checkout-session-list", "GET", f"{P}/checkout-sessions"),
    Probe("checkout-session-list", "POST", f"{P}/checkout-sessions", {"amount": "10"}),
    Probe("checkout-session-detail", "GET", f"{P}/checkout-sessions/{{session}}"),
    # B's top-up asked for under A's own path.
    Probe("checkout-session-detail", "GET", f"/api/v1/projects/{A}/checkout-sessions/{{session}}"),
    # The list of projects: answered, without B (checked in test_the_project_list_shows_only_the_callers_own).
    Probe("project-list", "GET", "/api/v1/projects/", key=200, member=200),
    Probe("project-list", "POST", "/api/v1/projects/", {"slug": "new-co", "name": "New"}, key=403, member=403),
    # The metered routes are the platform's: no tenant reads or adds them.
    Probe("gateway-routes", "GET", "/api/v1/gateway/routes", key=403, member=403),
    Probe("gateway-routes", "POST", "/api/v1/gateway/routes", GATEWAY_ROUTE, key=403, member=403),
    Probe("project-alerts", "GET", f"{P}/alerts"),
    Probe("project-alerts", "POST", f"{P}/alerts", ALERT),
    Probe("alert-detail", "DELETE", "/api/v1/alerts/{alert}"),
    Probe("grants", "GET", f"{P}/grants"),
    Probe("grants", "POST", f"{P}/grants", GRANT),
    Probe("grant-void", "POST", "/api/v1/grants/{grant}/void", {"reason": "r"}),
]

# Staff's and the platform's operations, on A's own project: refused to A's key and A's members.
STAFF_ONLY = [
    Probe("project-list", "POST", "/api/v1/projects/", {"slug": "new-co", "name": "New"}, 403, 403),
    Probe("wallet-credit", "POST", f"/api/v1/projects/{A}/wallet/credit", {"amount": "1000000", "reason": "r"}, 403, 403),
    Probe("wallet-debit", "POST", f"/api/v1/projects/{A}/wallet/debit", {"amount": "1", "reason": "r"}, 403, 403),
    Probe("quota-detail", "PUT", f"/api/v1/projects/{A}/quotas/vm", {"limit": "1000"}, 403, 403),
    Probe("quota-release", "POST", f"/api/v1/projects/{A}/quotas/vm/release", {"quantity": "1"}, 403, 403),
    Probe("budget", "PUT", f"/api/v1/projects/{A}/budget", {"hard_limit": None}, 403, 403),
    Probe("gateway-routes", "POST", "/api/v1/gateway/routes", GATEWAY_ROUTE, 403, 403),
    Probe("project-alerts", "POST", f"/api/v1/projects/{A}/alerts", ALERT, 403, 403),
    Probe("alert-detail", "DELETE", "/api/v1/alerts/{own_alert}", None, 403, 403),
    Probe("grants", "POST", f"/api/v1/projects/{A}/grants", GRANT, 403, 403),
    Probe("grant-void", "POST", "/api/v1/grants/{own_grant}/void", {"reason": "r"}, 403, 403),
]

# The portal's pages of B, for a member of A.
PORTAL = {
    "project": ("GET", "/portal/{project}/"),
    "statement": ("GET", "/portal/{project}/statements"),
    "topup": ("POST", "/portal/{project}/topup"),
    "topup-success": ("GET", "/portal/{project}/topup/success?session_id={session}"),
    "topup-cancel": ("GET", "/portal/{project}/topup/cancel"),
    "topup-status": ("GET", "/portal/{project}/topup/status?session_id={session}"),
    "autotopup": ("POST", "/portal/{project}/auto-top-up"),
    "autotopup-card": ("POST", "/portal/{project}/auto-top-up/card"),
    "alerts": ("GET", "/portal/{project}/alerts"),
    "alert-delete": ("POST", "/portal/{project}/alerts/{alert}/delete"),
}


def test_every_route_is_in_the_isolation_table():
    probed = {(probe.route, probe.method) for probe in PROBES}
    for route in api_routes():
        if route.name in NOT_A_TENANTS:
            continue
        assert route.methods, f"{route.name}: a function view; state how it is isolated"
        for method in route.methods:
            assert (route.name, method) in probed, f"{method} {route.path} has no isolation probe"
    portal = {route.name for route in url_routes() if route.path.startswith("portal/")}
    assert portal == set(PORTAL) | {"index"}


@pytest.fixture
def world(settings):
    """A and B, funded, each with a pending reservation, a quota, a budget and a top-up; A's key and member."""
    clear_caches()
    # Top-ups on, so a refusal below is isolation, not billing_disabled (no call reaches Stripe).
    settings.STRIPE_SECRET_KEY = "sk_test_isolation"
    platform = ServiceClient(platform_key())
    ids = {}
    for slug in (A, B):
        project = ProjectFactory(slug=slug, balance="100")
        set_quota(project, "vm", "10")
        assert platform.put(f"/api/v1/projects/{slug}/budget", {"hard_limit": "50"}, format="json").status_code == 200
        reservation = platform.post_idem("/api/v1/reservations", {"project": slug, "resource_type": "vm",
                                                                  "quantity": "1", "amount": "1"})
        assert reservation.status_code == 201, reservation.json()
        session = CheckoutSession.objects.create(
            project=project, idempotency_key=f"iso-{slug}", amount=10_000_000, currency="usd", currency_amount=1000,
            created_by="system", success_url="https://x.example/s", cancel_url="https://x.example/c",
            stripe_session_id=f"cs_iso_{slug}", status=CheckoutSession.Status.OPEN,
        )
        alert = ThresholdAlert.objects.create(project=project, metric="budget", threshold=90)
        ids[slug] = {"project": project, "reservation": reservation.json()["id"], "session": session.stripe_session_id,
                     "alert": alert.id, "grant": Grant.objects.filter(wallet__project=project).values_list("id", flat=True)[0]}
    a_member = member(ids[A]["project"])
    yield ids, ServiceClient(scoped_key(ids[A]["project"])), a_member
    clear_caches()


_keys = iter(range(10**9))


def _fill(text: str, ids: dict, project: str) -> str:
    return (text.replace("{project}", project).replace("{reservation}", str(ids[B]["reservation"]))
            .replace("{session}", ids[B]["session"]).replace("{alert}", str(ids[B]["alert"]))
            .replace("{own_alert}", str(ids[A]["alert"]))
            .replace("{grant}", str(ids[B]["grant"])).replace("{own_grant}", str(ids[A]["grant"])))


def _send(client, probe: Probe, ids: dict, project: str):
    path = _fill(probe.path, ids, project)
    if probe.method == "GET":
        return client.get(path)
    body = _usage_body(project) if probe.route == "usage-events" else probe.body
    text = _fill(json.dumps(body), ids, project)
    send = {"PUT": client.put, "POST": client.post, "DELETE": client.delete}[probe.method]
    return send(path, text, content_type="application/json", HTTP_IDEMPOTENCY_KEY=f"iso-{next(_keys)}")


def _callers(world):
    ids, key_client, a_member = world
    session_client = APIClient()
    session_client.force_login(a_member)
    return ids, {"key": key_client, "member": session_client}


def _refusal_problems(client, probe: Probe, ids: dict, expected: int) -> list[str]:
    """What is wrong with the answer to `probe` against B (empty: isolated, nothing written)."""
    before = money_snapshot()
    response = _send(client, probe, ids, B)
    name = f"{probe.method} {probe.route}"
    if response.status_code != expected:
        return [f"{name}: {response.status_code} {response.content[:200]!r}, expected {expected}"]
    problems = []
    body = response.json()
    if expected == 200 and probe.route == "usage-events":
        if body["accepted"] != 0 or body["results"][0].get("reason") != "unknown_project":
            problems.append(f"{name}: {body}")
    elif expected == 200:
        if B in json.dumps(body):
            problems.append(f"{name}: shows {B}")
    elif not {"error", "detail"} <= set(body):
        problems.append(f"{name}: not the error shape: {body}")
    elif "{project}" in probe.path or "{project}" in json.dumps(probe.body):
        # The same answer as for a project that does not exist: B's existence is not revealed.
        unknown = _send(client, probe, ids, NOBODY)
        if (unknown.status_code, unknown.json()["error"]) != (response.status_code, body["error"]):
            problems.append(f"{name}: {response.status_code} for {B}, {unknown.status_code} for no project")
    if money_snapshot() != before:
        problems.append(f"{name}: wrote something")
    return problems


# One world per caller, every probe in turn (a world per probe would cost a minute per backend).
@pytest.mark.parametrize("caller", ["key", "member"])
def test_a_caller_of_project_a_cannot_reach_project_b(world, caller):
    ids, clients = _callers(world)
    problems = [problem for probe in PROBES
                for problem in _refusal_problems(clients[caller], probe, ids, getattr(probe, caller))]
    assert problems == []


@pytest.mark.parametrize("caller", ["key", "member"])
def test_staff_operations_are_refused_to_project_keys_and_members(world, caller):
    ids, clients = _callers(world)
    before = money_snapshot()
    for probe in STAFF_ONLY:
        response = _send(clients[caller], probe, ids, A)
        assert response.status_code == 403, (probe, response.content[:300])
        assert response.json()["error"] == "forbidden"
    assert money_snapshot() == before


def test_the_project_list_shows_only_the_callers_own(world):
    ids, clients = _callers(world)
    for client in clients.values():
        assert [project["slug"] for project in client.get("/api/v1/projects/").json()] == [A]


def test_a_member_of_a_finds_none_of_bs_portal_pages(world):
    ids, _, a_member = world
    client = Client()
    client.force_login(a_member)
    before = money_snapshot()
    for name, (method, path) in sorted(PORTAL.items()):
        send = client.post if method == "POST" else client.get
        data = {"amount": "10", "token": "t" * 24} if method == "POST" else None
        assert send(_fill(path, ids, B), data).status_code == 404, name
        assert send(_fill(path, ids, NOBODY), data).status_code == 404, name
    assert money_snapshot() == before
    index = client.get("/portal/").content.decode()
    assert f"/portal/{A}/" in index and f"/portal/{B}/" not in index
