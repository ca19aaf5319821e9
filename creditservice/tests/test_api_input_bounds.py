"""Every write endpoint, every numeric and string field: the value at its bound is accepted; just past it,
2^63, 10^30, control characters and ids no column holds are a 4xx in the error shape that writes nothing.

The endpoints are read from the URL conf (test_every_write_endpoint_is_in_the_battery), so a new one
cannot be left out. The bounds are the documented ones: money.MAX_AMOUNT_MICROS (10^12 credits) for
every amount, money.MAX_QUANTITY_MICROS (10^12 units) for every quantity, 1..RESERVATION_MAX_TTL_SECONDS
for a TTL, page_size <= 200, and each string's column length.
"""

import json
from dataclasses import dataclass, field

import pytest
from django.utils import timezone

from creditservice.lib.money import MAX_AMOUNT_MICROS, MAX_QUANTITY_MICROS, format_amount, format_micros
from creditservice.testing.fixtures import ServiceClient
from creditservice.testing.routes import write_route_names
from creditservice.testing.snapshots import money_snapshot
from quotas.selectors import clear_caches
from wallets.models import Grant
from wallets.tests.factories import ProjectFactory, fund, platform_key

pytestmark = pytest.mark.django_db

MAX = format_amount(MAX_AMOUNT_MICROS)  # "1000000000000"
OVER = format_amount(MAX_AMOUNT_MICROS + 1)  # "1000000000000.000001"
MAX_QUANTITY = format_micros(MAX_QUANTITY_MICROS)
OVER_QUANTITY = format_micros(MAX_QUANTITY_MICROS + 1)
# Out of every column: as decimal strings and as JSON numbers.
HUGE = [str(2**63), str(10**30), 2**63, 10**30]
# NUL, other C0 controls, DEL, a C1 control and a lone surrogate (only a JSON \u escape can carry one).
CONTROL = ["a\x00b", "a\x01b", "a\x1b[31mb", "a\nb", "a\x7fb", "a\x85b", "a\ud800b"]
# The hold of hourly_cost × MIN_RUNTIME_HOURS (24): the largest that stays within one amount, and the next.
HOURLY_AT_BOUND = format_amount(MAX_AMOUNT_MICROS // 24)  # × 24 = 999999999999.999984
HOURLY_OVER = format_amount(MAX_AMOUNT_MICROS // 24 + 1)
# Ids: one past a bigint, far past it, and ids that are not positive.
HUGE_IDS = ["9223372036854775808", "99999999999999999999", "0", "00"]

PROJECT = "/api/v1/projects/acme"
RESERVE = "/api/v1/reservations"


@dataclass
class Call:
    method: str
    path: str
    body: object = None
    key: str | None = "auto"  # Idempotency-Key: "auto" gives a fresh one, None sends none
    expect: str = "refused"  # "refused": a 4xx; "rejected": a 200 whose every usage event is rejected
    route: str = ""
    extra: dict = field(default_factory=dict)


def _reservation(**change) -> dict:
    return {"project": "acme", "resource_type": "vm", "quantity": "1", "amount": "1", **change}


GATEWAY_ROUTES = "/api/v1/gateway/routes"


def _gateway_route(**change) -> dict:
    return {"method": "GET", "path_prefix": "/v1/x", "resource_type": "api_call", "price": "1", **change}


ALERTS = f"{PROJECT}/alerts"


def _alert(**change) -> dict:
    return {"metric": "available", "level": "warning", "threshold": "1", **change}


def _grant(**change) -> dict:
    return {"category": "promotional", "amount": "1", "reason": "r", **change}


def _event(**change) -> dict:
    return {"events": [{"id": "e-1", "project": "acme", "resource_type": "vm", "quantity": "1",
                        "timestamp": "{now}", **change}]}


def _refused() -> list:
    """(test id, Call) for every value beyond its bound."""
    cases: list[tuple[str, Call]] = []

    def add(name: str, call: Call) -> None:
        cases.append((name, call))

    # POST /projects/
    add("project-slug-too-long", Call("POST", "/api/v1/projects/", {"slug": "s" * 64, "name": "n"}, route="project-list"))
    add("project-name-too-long", Call("POST", "/api/v1/projects/", {"slug": "new", "name": "n" * 201}, route="project-list"))
    for i, text in enumerate(CONTROL):
        add(f"project-name-control-{i}", Call("POST", "/api/v1/projects/", {"slug": "new", "name": text}, route="project-list"))
        add(f"project-slug-control-{i}", Call("POST", "/api/v1/projects/", {"slug": text, "name": "n"}, route="project-list"))

    # Wallet credit and debit.
    for route, path in (("wallet-credit", f"{PROJECT}/wallet/credit"), ("wallet-debit", f"{PROJECT}/wallet/debit")):
        for i, value in enumerate([OVER, *HUGE, "0", "-1", "1e2", 5, "NaN"]):
            add(f"{route}-amount-{i}", Call("POST", path, {"amount": value, "reason": "r"}, route=route))
        add(f"{route}-reason-too-long", Call("POST", path, {"amount": "1", "reason": "r" * 501}, route=route))
        for i, text in enumerate(CONTROL):
            add(f"{route}-reason-control-{i}", Call("POST", path, {"amount": "1", "reason": text}, route=route))
        add(f"{route}-key-too-long", Call("POST", path, {"amount": "1", "reason": "r"}, key="k" * 256, route=route))
        for i, text in enumerate(CONTROL[:3]):
            add(f"{route}-key-control-{i}", Call("POST", path, {"amount": "1", "reason": "r"}, key=text, route=route))
        add(f"{route}-slug-nul", Call("POST", path.replace("acme", "ac%00me"), {"amount": "1", "reason": "r"}, route=route))
    add("wallet-debit-beyond-available", Call("POST", f"{PROJECT}/wallet/debit", {"amount": OVER, "reason": "r"},
                                              route="wallet-debit"))

    # Admission check and reservations.
    for route, path in (("admission-check", "/api/v1/admission/check"), ("reservation-create", RESERVE)):
        key = "auto" if route == "reservation-create" else None
        for i, value in enumerate([OVER_QUANTITY, *HUGE]):
            add(f"{route}-quantity-{i}", Call("POST", path, _reservation(quantity=value), key=key, route=route))
        for i, value in enumerate([OVER, *HUGE]):
            add(f"{route}-amount-{i}", Call("POST", path, _reservation(amount=value), key=key, route=route))
        for i, value in enumerate(["400000000000", HOURLY_OVER, *HUGE]):
            body = _reservation(hourly_cost=value)
            del body["amount"]
            add(f"{route}-hourly-cost-{i}", Call("POST", path, body, key=key, route=route))
        for name in ("project", "resource_type"):
            add(f"{route}-{name}-too-long", Call("POST", path, _reservation(**{name: "x" * 64}), key=key, route=route))
            for i, text in enumerate(CONTROL):
                add(f"{route}-{name}-control-{i}", Call("POST", path, _reservation(**{name: text}), key=key, route=route))
    for i, value in enumerate([86401, 0, -1, 2**63, 10**30, str(10**30), "1e3", "\u0663", True, 1.5]):
        add(f"reservation-create-ttl-{i}", Call("POST", RESERVE, _reservation(ttl_seconds=value), route="reservation-create"))
    add("reservation-create-key-too-long", Call("POST", RESERVE, _reservation(), key="k" * 256, route="reservation-create"))
    add("reservation-create-key-control", Call("POST", RESERVE, _reservation(), key="a\x01b", route="reservation-create"))

    # Commit and release of the pending reservation {reservation}; ids no column holds.
    commit = f"{RESERVE}/{{reservation}}/commit"
    for i, value in enumerate(["1.000001", OVER, *HUGE, "-1"]):
        add(f"commit-amount-{i}", Call("POST", commit, {"amount": value}, key=None, route="reservation-commit"))
    for route, suffix in (("reservation-commit", "/commit"), ("reservation-release", "/release"),
                          ("reservation-detail", "")):
        method = "GET" if route == "reservation-detail" else "POST"
        for i, rid in enumerate(HUGE_IDS):
            add(f"{route}-id-{i}", Call(method, f"{RESERVE}/{rid}{suffix}", {} if method == "POST" else None, key=None,
                                        route=route))
        add(f"{route}-id-nul", Call(method, f"{RESERVE}/{{reservation}}%00{suffix}", {} if method == "POST" else None,
                                    key=None, route=route))
    add("release-unknown-field", Call("POST", f"{RESERVE}/{{reservation}}/release", {"amount": "1"}, key=None,
                                      route="reservation-release"))

    # Quotas: PUT limit, POST release.
    quota = f"{PROJECT}/quotas/vm"
    for i, value in enumerate([OVER_QUANTITY, *HUGE, "-1"]):
        add(f"quota-limit-{i}", Call("PUT", quota, {"limit": value}, key=None, route="quota-detail"))
        add(f"quota-release-{i}", Call("POST", f"{quota}/release", {"quantity": value}, route="quota-release"))
    add("quota-type-nul", Call("PUT", f"{PROJECT}/quotas/v%00m", {"limit": "1"}, key=None, route="quota-detail"))
    add("quota-type-too-long", Call("PUT", f"{PROJECT}/quotas/{'x' * 51}", {"limit": "1"}, key=None, route="quota-detail"))
    add("quota-release-type-control", Call("POST", f"{PROJECT}/quotas/v%1Bm/release", {"quantity": "1"},
                                           route="quota-release"))

    # Budget.
    for i, value in enumerate([OVER, *HUGE, "-1"]):
        add(f"budget-hard-{i}", Call("PUT", f"{PROJECT}/budget", {"hard_limit": value}, key=None, route="budget"))
        add(f"budget-soft-{i}", Call("PUT", f"{PROJECT}/budget", {"hard_limit": "1", "soft_limit": value}, key=None,
                                     route="budget"))

    # Usage events: a bad event is that event's rejection, a bad batch is a 400.
    add("usage-batch-too-large", Call("POST", "/api/v1/usage/events", {"events": [_event()["events"][0]] * 1001},
                                      key=None, route="usage-events"))
    add("usage-not-a-batch", Call("POST", "/api/v1/usage/events", {"events": "x"}, key=None, route="usage-events"))
    for i, value in enumerate([OVER_QUANTITY, *HUGE, "-1"]):
        add(f"usage-quantity-{i}", Call("POST", "/api/v1/usage/events", _event(quantity=value), key=None,
                                        expect="rejected", route="usage-events"))
    add("usage-id-too-long", Call("POST", "/api/v1/usage/events", _event(id="e" * 201), key=None, expect="rejected",
                                  route="usage-events"))
    for i, text in enumerate(CONTROL):
        for name in ("id", "project", "resource_type"):
            add(f"usage-{name}-control-{i}", Call("POST", "/api/v1/usage/events", _event(**{name: text}), key=None,
                                                  expect="rejected", route="usage-events"))

    # Checkout sessions (top-up bounds are TOPUP_MIN_CREDITS..TOPUP_MAX_CREDITS: 5..10000 by default).
    checkout = f"{PROJECT}/checkout-sessions"
    for i, value in enumerate(["10000.000001", "4.999999", OVER, *HUGE]):
        add(f"checkout-amount-{i}", Call("POST", checkout, {"amount": value}, route="checkout-session-list"))
    long_url = "https://app.example.com/" + "p" * (1501 - len("https://app.example.com/"))
    for name in ("success_url", "cancel_url"):
        add(f"checkout-{name}-too-long", Call("POST", checkout, {"amount": "10", name: long_url}, route="checkout-session-list"))
        add(f"checkout-{name}-scheme", Call("POST", checkout, {"amount": "10", name: "javascript:alert(1)"},
                                            route="checkout-session-list"))
        for i, text in enumerate(CONTROL[:3]):
            add(f"checkout-{name}-control-{i}", Call("POST", checkout, {"amount": "10", name: f"https://app.example.com/{text}"},
                                                     route="checkout-session-list"))
    add("checkout-detail-nul", Call("GET", f"{checkout}/cs%00x", key=None, route="checkout-session-detail"))

    # Metered gateway routes.
    for i, value in enumerate([OVER, *HUGE, "0", "-1", "1e2", 5, "NaN"]):
        add(f"gateway-route-price-{i}", Call("POST", GATEWAY_ROUTES, _gateway_route(price=value), route="gateway-routes"))
    for i, value in enumerate(["/" + "p" * 200, "v1", "/v1//x", "/v1/./x", "/v1/%41", "/v1?x", "", *CONTROL]):
        add(f"gateway-route-prefix-{i}", Call("POST", GATEWAY_ROUTES, _gateway_route(path_prefix=value),
                                              route="gateway-routes"))
    for i, value in enumerate(["GETX", "get", "", "x" * 8]):
        add(f"gateway-route-method-{i}", Call("POST", GATEWAY_ROUTES, _gateway_route(method=value), route="gateway-routes"))
    # A type metered by duration, an unknown one, one no column holds.
    for i, value in enumerate(["vm", "nosuch", "x" * 51, "a\x00b"]):
        add(f"gateway-route-type-{i}", Call("POST", GATEWAY_ROUTES, _gateway_route(resource_type=value),
                                            route="gateway-routes"))
    add("gateway-route-key-too-long", Call("POST", GATEWAY_ROUTES, _gateway_route(), key="k" * 256, route="gateway-routes"))
    # The gateway's subrequest takes a project key only (its header bounds: gateway/tests/test_api_authorize.py).
    add("gateway-authorize-platform-key", Call("POST", "/gateway/authorize", {}, key=None, route="gateway-authorize"))
    add("gateway-authorize-path-platform-key", Call("POST", "/gateway/authorize/v1/x", {}, key=None,
                                                    route="gateway-authorize-path"))

    # Credit grants: amount, priority 0..100, reason ≤ 500, ≤ 20 resource types of ≤ 63, expiry in the future.
    grants = f"{PROJECT}/grants"
    for i, value in enumerate([OVER, *HUGE, "0", "-1"]):
        add(f"grant-amount-{i}", Call("POST", grants, _grant(amount=value), route="grants"))
    for i, value in enumerate([101, -1, 2**63, 1.5, "x"]):
        add(f"grant-priority-{i}", Call("POST", grants, _grant(priority=value), route="grants"))
    add("grant-reason-too-long", Call("POST", grants, _grant(reason="r" * 501), route="grants"))
    add("grant-reason-blank", Call("POST", grants, _grant(reason=""), route="grants"))
    for i, text in enumerate(CONTROL):
        add(f"grant-reason-control-{i}", Call("POST", grants, _grant(reason=text), route="grants"))
    add("grant-category-purchased", Call("POST", grants, _grant(category="purchased"), route="grants"))
    add("grant-resource-types-too-many", Call("POST", grants, _grant(resource_types=[f"t{i}" for i in range(21)]),
                                              route="grants"))
    add("grant-resource-type-too-long", Call("POST", grants, _grant(resource_types=["x" * 64]), route="grants"))
    add("grant-resource-type-control", Call("POST", grants, _grant(resource_types=["a\x01b"]), route="grants"))
    add("grant-expires-in-the-past", Call("POST", grants, _grant(expires_at="2001-01-01T00:00:00Z"), route="grants"))
    add("grant-expires-before-effective", Call("POST", grants, _grant(effective_at="2100-01-02T00:00:00Z",
                                                                      expires_at="2100-01-01T00:00:00Z"), route="grants"))
    add("grant-key-too-long", Call("POST", grants, _grant(), key="k" * 256, route="grants"))
    for i, gid in enumerate(HUGE_IDS):
        add(f"grant-void-id-{i}", Call("POST", f"/api/v1/grants/{gid}/void", {"reason": "r"}, route="grant-void"))
    add("grant-void-reason-too-long", Call("POST", "/api/v1/grants/{grant}/void", {"reason": "r" * 501}, route="grant-void"))
    add("grant-void-reason-control", Call("POST", "/api/v1/grants/{grant}/void", {"reason": "a\x00b"}, route="grant-void"))
    # Threshold alerts: credits for available, 1..8784 hours for runway, 1..100 percent for budget.
    for i, (metric, value) in enumerate([("available", OVER), *(("available", v) for v in HUGE), ("available", "-1"),
                                         ("runway", "0"), ("runway", "8785"), ("runway", "1.5"), ("runway", "1e3"),
                                         ("runway", "\u0663"), ("budget", "0"), ("budget", "101"), ("budget", str(2**63)),
                                         ("budget", "-1"), ("budget", 80)]):
        add(f"alert-threshold-{i}", Call("POST", ALERTS, _alert(metric=metric, threshold=value), route="project-alerts"))
    for i, text in enumerate(["x" * 41, *CONTROL[:3]]):
        add(f"alert-threshold-text-{i}", Call("POST", ALERTS, _alert(metric="runway", threshold=text), route="project-alerts"))
    for name in ("metric", "level"):
        add(f"alert-{name}-unknown", Call("POST", ALERTS, _alert(**{name: "x"}), route="project-alerts"))
    add("alert-key-too-long", Call("POST", ALERTS, _alert(), key="k" * 256, route="project-alerts"))
    for i, aid in enumerate(HUGE_IDS):
        add(f"alert-detail-id-{i}", Call("DELETE", f"/api/v1/alerts/{aid}", key=None, route="alert-detail"))

    # A statement's month: YYYY-MM, from the project's first month to the current one; format json or csv.
    for i, month in enumerate(["2026-13", "1999-12", "9999-12", "2026-1", "%00", "x" * 300]):
        add(f"statement-month-{i}", Call("GET", f"{PROJECT}/statements/{month}", key=None, route="statement"))
    add("statement-format", Call("GET", f"{PROJECT}/statements/{timezone.now():%Y-%m}?format=%00", key=None,
                                 route="statement"))

    # The Stripe webhook: nothing is taken without a valid signature.
    add("stripe-webhook-unsigned", Call("POST", "/stripe/webhook", {"id": "evt_\x00", "type": "x"}, key=None,
                                        route="stripe-webhook"))

    # Lists: page_size and cursor.
    for route, path in (("transactions", f"{PROJECT}/transactions"), ("project-reservations", f"{PROJECT}/reservations")):
        for i, query in enumerate(["page_size=201", "page_size=0", "page_size=abc", f"page_size={2**63}",
                                   # Not base64; "p=abc"; a position past any id.
                                   "cursor=garbage", "cursor=cD1hYmM%3D", "cursor=cD05OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OQ%3D%3D",
                                   f"cursor={'c' * 201}", "cursor=%00", "kind=%00"]):
            add(f"{route}-query-{i}", Call("GET", f"{path}?{query}", key=None, route=route))
    return [pytest.param(call, id=name) for name, call in cases]


def _accepted() -> list:
    """(test id, Call) for every value at its bound: each must be taken."""
    hourly = _reservation(hourly_cost=HOURLY_AT_BOUND)
    del hourly["amount"]
    cases = [
        ("project-at-bounds", Call("POST", "/api/v1/projects/", {"slug": "s" * 63, "name": "n" * 200}, route="project-list")),
        ("credit-at-bounds", Call("POST", f"{PROJECT}/wallet/credit", {"amount": MAX, "reason": "r" * 500}, key="k" * 255,
                                  route="wallet-credit")),
        ("debit-at-bounds", Call("POST", f"{PROJECT}/wallet/debit", {"amount": MAX, "reason": "r" * 500},
                                 route="wallet-debit")),
        # Another type than the pending reservation's vm: the holds of one type stay within one quantity.
        ("check-at-bounds", Call("POST", "/api/v1/admission/check",
                                 _reservation(resource_type="storage_gib", quantity=MAX_QUANTITY, amount=MAX), key=None,
                                 route="admission-check")),
        ("reserve-amount-at-bound", Call("POST", RESERVE, _reservation(amount=MAX), route="reservation-create")),
        ("reserve-quantity-at-bound", Call("POST", RESERVE, _reservation(resource_type="storage_gib", quantity=MAX_QUANTITY),
                                           route="reservation-create")),
        ("reserve-hourly-cost-at-bound", Call("POST", RESERVE, hourly, route="reservation-create")),
        ("reserve-ttl-at-bound", Call("POST", RESERVE, _reservation(ttl_seconds=86400), route="reservation-create")),
        ("commit-at-bound", Call("POST", f"{RESERVE}/{{reservation}}/commit", {"amount": "1"}, key=None,
                                 route="reservation-commit")),
        ("release", Call("POST", f"{RESERVE}/{{reservation}}/release", {}, key=None, route="reservation-release")),
        ("quota-limit-at-bound", Call("PUT", f"{PROJECT}/quotas/vm", {"limit": MAX_QUANTITY}, key=None, route="quota-detail")),
        ("quota-release-at-bound", Call("POST", f"{PROJECT}/quotas/vm/release", {"quantity": MAX_QUANTITY},
                                        route="quota-release")),
        ("budget-at-bounds", Call("PUT", f"{PROJECT}/budget", {"hard_limit": MAX, "soft_limit": MAX}, key=None, route="budget")),
        ("usage-at-bounds", Call("POST", "/api/v1/usage/events", _event(id="e" * 200, quantity="1000"), key=None,
                                 route="usage-events")),
        ("checkout-at-bounds", Call("POST", f"{PROJECT}/checkout-sessions", {
            "amount": "10000", "success_url": "https://app.example.com/" + "p" * (1500 - len("https://app.example.com/")),
        }, route="checkout-session-list")),
        ("gateway-route-at-bounds", Call("POST", GATEWAY_ROUTES, _gateway_route(path_prefix="/" + "p" * 199, price=MAX),
                                         key="k" * 255, route="gateway-routes")),
        ("alert-available-at-bound", Call("POST", ALERTS, _alert(threshold=MAX), key="k" * 255, route="project-alerts")),
        ("grant-at-bounds", Call("POST", f"{PROJECT}/grants", _grant(
            amount=MAX, priority=100, reason="r" * 500, resource_types=[f"t{i}" for i in range(20)]), key="k" * 255,
            route="grants")),
        ("grant-priority-zero", Call("POST", f"{PROJECT}/grants", _grant(priority=0), route="grants")),
        ("alert-available-zero", Call("POST", ALERTS, _alert(threshold="0"), route="project-alerts")),
        ("alert-runway-at-bounds", Call("POST", ALERTS, _alert(metric="runway", threshold="8784"), route="project-alerts")),
        ("alert-budget-at-bounds", Call("POST", ALERTS, _alert(metric="budget", threshold="100"), route="project-alerts")),
        ("transactions-page-at-bound", Call("GET", f"{PROJECT}/transactions?page_size=200", key=None, route="transactions")),
        ("statement-this-month", Call("GET", f"{PROJECT}/statements/{timezone.now():%Y-%m}", key=None, route="statement")),
        ("reservations-page-at-bound", Call("GET", f"{PROJECT}/reservations?page_size=200", key=None,
                                            route="project-reservations")),
    ]
    return [pytest.param(call, id=name) for name, call in cases]


_keys = iter(range(10**9))


def _send(client: ServiceClient, call: Call, reservation_id: int):
    path = call.path.replace("{reservation}", str(reservation_id))
    if "{grant}" in path:  # the grant of acme's funding
        path = path.replace("{grant}", str(Grant.objects.filter(wallet__project__slug="acme").values_list("id", flat=True)[0]))
    headers = {}
    if call.key == "auto":
        headers["HTTP_IDEMPOTENCY_KEY"] = f"bounds-{next(_keys)}"
    elif call.key is not None:
        headers["HTTP_IDEMPOTENCY_KEY"] = call.key
    if call.method == "GET":
        return client.get(path, **headers)
    # json.dumps keeps a lone surrogate as a \ud800 escape, the way a client would send it.
    body = json.dumps(call.body).replace("{now}", timezone.now().isoformat())
    send = {"PUT": client.put, "POST": client.post, "DELETE": client.delete}[call.method]
    return send(path, body, content_type="application/json", **headers)


@pytest.fixture
def world(request):
    """acme with one maximal amount available, and one pending reservation of 1 credit and 1 vm."""
    if request.node.callspec.params["call"].route.startswith(("checkout", "stripe")):
        request.getfixturevalue("fake_stripe")  # billing on; the fake is slow to stop, so only where it is needed
        request.getfixturevalue("settings").CHECKOUT_RETURN_ORIGINS = ["https://app.example.com"]
    clear_caches()
    client = ServiceClient(platform_key())
    # Unhandled server errors are answered as the product answers them (a 500), not raised into the test.
    client.raise_request_exception = False
    fund(ProjectFactory(slug="acme", balance=MAX), "1")
    response = client.post_idem(RESERVE, _reservation())
    assert response.status_code == 201, response.json()
    yield client, response.json()["id"]
    clear_caches()


@pytest.mark.parametrize("call", _refused())
def test_a_value_beyond_its_bound_is_a_4xx_in_the_error_shape_that_writes_nothing(world, call):
    client, reservation_id = world
    before = money_snapshot()
    response = _send(client, call, reservation_id)
    if call.expect == "rejected":
        assert response.status_code == 200, response.content
        body = response.json()
        assert body["accepted"] == 0 and body["rejected"] == len(body["results"]), body
    else:
        assert 400 <= response.status_code < 500, (response.status_code, response.content[:500])
        body = response.json()
        assert {"error", "detail"} <= set(body), body
        assert isinstance(body["error"], str)
    assert money_snapshot() == before


@pytest.mark.parametrize("call", _accepted())
def test_a_value_at_its_bound_is_accepted(world, call):
    client, reservation_id = world
    response = _send(client, call, reservation_id)
    assert 200 <= response.status_code < 300, (response.status_code, response.content[:500])
    if call.route == "usage-events":
        assert response.json()["accepted"] == 1, response.json()
    if call.route == "admission-check":
        assert response.json()["allowed"] is True, response.json()


def test_every_write_endpoint_is_in_the_battery():
    covered = {param.values[0].route for param in _refused()}
    assert write_route_names() - covered == set()
    assert {"reservation-create", "wallet-credit", "checkout-session-list", "stripe-webhook"} <= write_route_names()


# --- Hostile bodies and values on every write endpoint -----------------------------------------------
# (route, method, path, a valid body, Idempotency-Key): the body is what each hostile case starts from.
WRITES = {
    "project-list": ("POST", "/api/v1/projects/", {"slug": "new", "name": "n"}, None),
    "wallet-credit": ("POST", f"{PROJECT}/wallet/credit", {"amount": "1", "reason": "r"}, "auto"),
    "wallet-debit": ("POST", f"{PROJECT}/wallet/debit", {"amount": "1", "reason": "r"}, "auto"),
    "admission-check": ("POST", "/api/v1/admission/check", _reservation(), None),
    "reservation-create": ("POST", RESERVE, _reservation(), "auto"),
    "reservation-commit": ("POST", f"{RESERVE}/{{reservation}}/commit", {"amount": "1"}, None),
    "reservation-release": ("POST", f"{RESERVE}/{{reservation}}/release", {}, None),
    "quota-detail": ("PUT", f"{PROJECT}/quotas/vm", {"limit": "1"}, None),
    "quota-release": ("POST", f"{PROJECT}/quotas/vm/release", {"quantity": "1"}, "auto"),
    "budget": ("PUT", f"{PROJECT}/budget", {"hard_limit": "1"}, None),
    "usage-events": ("POST", "/api/v1/usage/events", _event(), None),
    "checkout-session-list": ("POST", f"{PROJECT}/checkout-sessions", {"amount": "10"}, "auto"),
    "stripe-webhook": ("POST", "/stripe/webhook", {"id": "evt_1", "type": "checkout.session.completed"}, None),
    "gateway-routes": ("POST", GATEWAY_ROUTES, _gateway_route(), "auto"),
    "project-alerts": ("POST", ALERTS, _alert(), "auto"),
    "grants": ("POST", f"{PROJECT}/grants", _grant(), "auto"),
    # No grant 999999 exists: every hostile body is still a 4xx in the error shape.
    "grant-void": ("POST", "/api/v1/grants/999999/void", {"reason": "r"}, "auto"),
    # No alert 1 exists: every hostile body is still a 4xx in the error shape.
    "alert-detail": ("DELETE", "/api/v1/alerts/1", {}, None),
    "gateway-authorize": ("POST", "/gateway/authorize", {}, None),
    "gateway-authorize-path": ("POST", "/gateway/authorize/v1/x", {}, None),
}
# Every decimal field: (route, field, zero is valid, null is valid). Usage quantities are per event.
DECIMAL_FIELDS = [
    ("wallet-credit", "amount", False, False), ("wallet-debit", "amount", False, False),
    ("admission-check", "quantity", False, False), ("admission-check", "amount", True, False),
    ("reservation-create", "quantity", False, False), ("reservation-create", "amount", True, False),
    ("reservation-create", "hourly_cost", False, False), ("reservation-commit", "amount", True, False),
    ("quota-detail", "limit", True, True), ("quota-release", "quantity", False, False),
    ("budget", "hard_limit", True, True), ("budget", "soft_limit", True, True),
    ("usage-events", "quantity", True, False), ("checkout-session-list", "amount", False, False),
    ("gateway-routes", "price", False, False), ("project-alerts", "threshold", True, False),
    ("grants", "amount", False, False),
]
# No amount or quantity takes these: signs, non-numbers, exponents, too many decimals, past every column,
# numbers where the grammar wants a string, other types, spaces and digits that are not ASCII.
NOT_A_DECIMAL = ["-1", "NaN", "Infinity", "-Infinity", "1e309", "1e2", str(2**63), 2**63, "1.0000001", "0.0000001",
                 "abc", "", " 1", "1 ", "+1", "0x10", "\u0663", "1\x00", 1, 1.5, True, [], {}]
# Raw bodies no endpoint takes: 2 MB, nested tens of thousands deep, not UTF-8, a key twice, not an object.
TWO_MB = b'{"x": "' + b"a" * 2_000_000 + b'"}'
DEEP = b"[" * 50_000 + b"]" * 50_000
DEEP_OBJECT = b'{"a":' * 20_000 + b"1" + b"}" * 20_000


def _with(body: dict, field_name: str, value) -> dict:
    if "events" in body:
        return {"events": [{**body["events"][0], field_name: value}]}
    body = {**body, field_name: value}
    if field_name == "hourly_cost":
        body.pop("amount", None)
    if field_name == "soft_limit":
        body["hard_limit"] = "1000"
    return body


def _duplicate_key(body: dict) -> bytes:
    """The body with its first key given again (another value), as a client's buggy encoder could send it."""
    text = json.dumps(body)
    first = next(iter(body), "x")
    return (text[:-1] + (", " if body else "") + f'"{first}": "2"}}').encode()


def _hostile_bodies(route: str) -> list[tuple[str, Call, bytes | None]]:
    """(case, call, raw body or None) for one write endpoint: the bodies and paths no endpoint takes."""
    method, path, body, key = WRITES[route]
    cases: list[tuple[str, Call, bytes | None]] = []

    def add(name: str, raw: bytes | None = None, call_body=None, call_path: str = path, expect: str = "refused"):
        cases.append((name, Call(method, call_path, call_body, key=key, route=route, expect=expect), raw))

    add("2mb-body", TWO_MB)
    add("deep-array", DEEP)
    add("deep-object", DEEP_OBJECT)
    add("not-utf8", json.dumps(body).encode()[:-1] + b', "x": "\xff\xfe"}' if body else b'{"x": "\xff\xfe"}')
    add("duplicate-key", _duplicate_key(body))
    for raw in [b"null", b"[]", b'"text"', b"1", b"", b"{", b'{"a": NaN}', b'{"a": 1e309}']:
        if raw == b"" and route in ("reservation-commit", "reservation-release"):
            continue  # no body is a commit of the whole hold, and a release
        add(f"raw {raw[:12]!r}", raw)
    if body and route != "reservation-commit":  # {} commits the whole hold
        add("missing-fields", call_body={})
    if "acme" in path:
        add("unknown-project", call_body=body, call_path=path.replace("acme", "nosuch"))
    elif "project" in body or "events" in body:
        add("unknown-project", call_body=_with(body, "project", "nosuch"),
            expect="rejected" if route == "usage-events" else "refused")
    if "{reservation}" in path:
        for rid in ["abc", "-1", "1.5", "%20", "\uff11", "1e3", "0x1", "%2F1"]:
            add(f"malformed-id {rid!r}", call_body=body, call_path=path.replace("{reservation}", rid))
    for name in ("reason", "name", "slug", "project", "resource_type"):
        if name in body:
            add(f"{name}-as-number", call_body=_with(body, name, 12))
    return cases


def _hostile_values(route: str, name: str, zero_ok: bool, null_ok: bool) -> list[tuple[str, Call, None]]:
    method, path, body, key = WRITES[route]
    expect = "rejected" if route == "usage-events" else "refused"
    values = NOT_A_DECIMAL + ([] if zero_ok else ["0", "0.000000"]) + ([] if null_ok else [None])
    return [(f"{name}={value!r}", Call(method, path, _with(body, name, value), key=key, route=route, expect=expect), None)
            for value in values]


@pytest.fixture
def hostile_world(request):
    route = request.node.callspec.params["route"]
    if route.startswith(("checkout", "stripe")):
        request.getfixturevalue("fake_stripe")
        request.getfixturevalue("settings").CHECKOUT_RETURN_ORIGINS = ["https://app.example.com"]
    clear_caches()
    client = ServiceClient(platform_key())
    client.raise_request_exception = False
    fund(ProjectFactory(slug="acme", balance="1000"), "1")
    response = client.post_idem(RESERVE, _reservation())
    assert response.status_code == 201, response.json()
    yield client, response.json()["id"]
    clear_caches()


def _refusals_that_failed(client: ServiceClient, reservation_id: int, cases: list) -> list[str]:
    """Send each case; what was not a 4xx in the error shape (or for usage, a rejection), or wrote anything."""
    failed = []
    for name, call, raw in cases:
        before = money_snapshot()
        if raw is None:
            response = _send(client, call, reservation_id)
        else:
            headers = {"HTTP_IDEMPOTENCY_KEY": f"hostile-{next(_keys)}"} if call.key == "auto" else {}
            send = {"PUT": client.put, "POST": client.post, "DELETE": client.delete}[call.method]
            response = send(call.path.replace("{reservation}", str(reservation_id)), raw,
                            content_type="application/json", **headers)
        if call.expect == "rejected":
            refused = response.status_code == 200 and response.json()["accepted"] == 0
        else:
            body = response.json() if response.get("Content-Type") == "application/json" else {}
            refused = 400 <= response.status_code < 500 and {"error", "detail"} <= set(body)
        if not refused or money_snapshot() != before:
            failed.append(f"{name}: {response.status_code} {response.content[:300]!r}")
    return failed


@pytest.mark.parametrize("route", sorted(WRITES))
def test_a_hostile_body_is_a_4xx_in_the_error_shape_that_writes_nothing(hostile_world, route):
    client, reservation_id = hostile_world
    assert _refusals_that_failed(client, reservation_id, _hostile_bodies(route)) == []


@pytest.mark.parametrize(("route", "name", "zero_ok", "null_ok"), DECIMAL_FIELDS,
                         ids=[f"{route}-{name}" for route, name, *_ in DECIMAL_FIELDS])
def test_a_value_no_decimal_field_takes_is_refused_and_writes_nothing(hostile_world, route, name, zero_ok, null_ok):
    client, reservation_id = hostile_world
    assert _refusals_that_failed(client, reservation_id, _hostile_values(route, name, zero_ok, null_ok)) == []


def test_every_write_endpoint_meets_the_hostile_battery():
    assert write_route_names() - set(WRITES) == set()
    # The write endpoints that take no amount or quantity.
    assert write_route_names() - {route for route, *_ in DECIMAL_FIELDS} == {
        "project-list", "reservation-release", "stripe-webhook", "gateway-authorize", "gateway-authorize-path",
        "alert-detail", "grant-void"}
