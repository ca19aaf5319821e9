"""The API answers like one API: both spellings of every route, JSON 404s, and refusals that say how to fix them."""

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, resolve

from creditservice.lib.errors import InsufficientCredits
from creditservice.lib.money import credits_to_micros
from creditservice.lib.routes import EitherSlashRoutePattern
from quotas.errors import BudgetExceeded
from quotas.models import Budget, QuotaDefault, ResourceType
from quotas.tests.helpers import RESERVE, reserve, set_quota, units
from wallets import ledger
from wallets.models import Account, Project, Transfer

pytestmark = pytest.mark.django_db


def _api_endpoints(patterns=None, prefix: str = "") -> list[tuple[str, URLPattern]]:
    """(route, pattern) of every named endpoint under api/ in the URL conf."""
    found = []
    for pattern in get_resolver().url_patterns if patterns is None else patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            found += _api_endpoints(pattern.url_patterns, route)
        elif route.startswith("api/") and pattern.name:
            found.append((route, pattern))
    return found


SAMPLE = {"slug": "acme", "reservation_id": "1", "grant_id": "1", "resource_type": "vm", "session_id": "cs_1",
          "month": "2026-01", "alert_id": "1"}


def _concrete(route: str) -> str:
    path = route
    for name, value in SAMPLE.items():
        for converter in ("slug", "db_id", "str", ""):
            path = path.replace(f"<{converter}:{name}>" if converter else f"<{name}>", value)
    assert "<" not in path, route
    return "/" + path


def test_every_api_route_takes_both_spellings():
    endpoints = _api_endpoints()
    assert len(endpoints) >= 20
    for route, pattern in endpoints:
        assert isinstance(pattern.pattern, EitherSlashRoutePattern), f"{route}: use api_path() for API routes"
        path = _concrete(route)
        other = path[:-1] if path.endswith("/") else f"{path}/"
        assert resolve(path).url_name == resolve(other).url_name == pattern.name, route


@pytest.mark.parametrize("debug", [False, True])
def test_a_post_without_the_trailing_slash_keeps_its_body(platform, settings, debug):
    # Was a 301 that dropped the body (DEBUG off) and a 500 error page (DEBUG on: APPEND_SLASH's RuntimeError).
    settings.DEBUG = debug
    response = platform.post("/api/v1/projects", {"slug": "new", "name": "New"}, format="json")
    assert response.status_code == 201, response.content
    assert Project.objects.filter(slug="new").exists()


def test_routes_written_without_a_slash_take_one(platform, project):
    # Were HTML 404s.
    assert platform.get("/api/v1/projects/acme/wallet/").json()["balance"] == "100"
    response = platform.post("/api/v1/admission/check/", {"project": "acme", "resource_type": "vm", "quantity": "1",
                                                          "amount": "1"}, format="json")
    assert response.json()["allowed"] is True
    assert platform.post_idem(f"{RESERVE}/", {"project": "acme", "resource_type": "vm", "quantity": "1",
                                              "amount": "1"}).status_code == 201


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("method", ["get", "post", "put", "delete"])
@pytest.mark.parametrize("path", ["/api/v1/nothing", "/api/v1/nothing/", "/api/", "/api/v2/projects/",
                                  "/api/v1/projects/acme/wallet/credit/extra"])
def test_an_unknown_api_url_is_a_json_404_in_the_error_shape(platform, anonymous, client, settings, debug, method,
                                                              path):
    settings.DEBUG = debug  # Django's own 404 page is HTML under DEBUG
    for caller in (platform, anonymous, client):  # a key (the lean handler's stack), none, a browser
        response = getattr(caller, method)(path, {}, format="json") if caller is not client else \
            getattr(caller, method)(path)
        assert response.status_code == 404, (caller, response.content[:200])
        assert response["Content-Type"] == "application/json"
        body = response.json()
        assert body["error"] == "not_found" and path in body["detail"]


def test_a_bad_cursor_is_a_400(platform, project):
    response = platform.get("/api/v1/projects/acme/transactions", {"cursor": "not-a-cursor"})
    assert response.status_code == 400
    assert response.json()["error"] == "validation_error" and "cursor" in response.json()["detail"]


def test_a_misaligned_window_start_is_a_400_that_says_the_alignment(platform, project, settings):
    settings.BILLING_WINDOW_MINUTES = 60
    # Was 200 with no charges: a moment inside a window matches none.
    response = platform.get("/api/v1/projects/acme/charges", {"window_start": "2026-11-22T04:17:00Z"})
    assert response.status_code == 400
    [message] = response.json()["detail"]["window_start"]
    assert "60 minutes" in message and "2026-11-22T04:00:00Z" in message
    assert platform.get("/api/v1/projects/acme/charges", {"window_start": "2026-11-22T04:00:00Z"}).status_code == 200


def test_an_unknown_resource_type_lists_the_valid_ones(platform, project):
    codes = list(ResourceType.objects.order_by("code").values_list("code", flat=True))
    assert "vm" in codes
    response = reserve(platform, resource_type="teleporter")
    assert response.status_code == 400
    [message] = response.json()["detail"]["resource_type"]
    assert "'teleporter'" in message and all(code in message for code in codes)

    response = platform.get("/api/v1/projects/acme/quotas/teleporter")
    assert response.status_code == 404 and all(code in response.json()["detail"] for code in codes)

    response = platform.post("/api/v1/usage/events", {"events": [{
        "id": "e1", "project": "acme", "resource_type": "teleporter", "quantity": "1",
        "timestamp": "2026-01-01T00:00:00Z"}]}, format="json")
    [result] = response.json()["results"]
    assert result["reason"] == "unknown_resource_type" and "vm" in result["detail"]


def test_a_ttl_above_the_maximum_is_a_400_that_says_the_maximum(platform, project, settings):
    settings.RESERVATION_MAX_TTL_SECONDS = 3600
    response = reserve(platform, ttl_seconds=3601)
    assert response.status_code == 400
    assert "3600" in response.json()["detail"]["ttl_seconds"][0]


def test_a_415_says_to_send_application_json(platform, project):
    response = platform.generic("POST", "/api/v1/projects/", "slug=x&name=y",
                                content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415
    body = response.json()
    assert body["error"] == "unsupported_media_type" and "Content-Type: application/json" in body["detail"]


def test_the_quota_list_shows_the_staff_defaults_that_apply(platform, project):
    vm, vcpu = ResourceType.objects.get(code="vm"), ResourceType.objects.get(code="vcpu")
    QuotaDefault.objects.create(resource_type=vm, limit=units("5"))
    QuotaDefault.objects.create(resource_type=vcpu, limit=units("64"))
    set_quota(project, "vcpu", "16")  # the project's own row wins over the default
    body = {row["resource_type"]: row for row in platform.get("/api/v1/projects/acme/quotas").json()}
    # Was only the project's own rows: a project saw no limit on vm though the default applies to it.
    assert (body["vm"]["limit"], body["vm"]["used"], body["vm"]["is_default"]) == ("5", "0", True)
    assert (body["vcpu"]["limit"], body["vcpu"]["is_default"]) == ("16", False)
    detail = platform.get("/api/v1/projects/acme/quotas/vm").json()
    assert (detail["limit"], detail["is_default"]) == ("5", True)


def test_every_402_carries_available(platform, project):
    # The wallet debit.
    response = platform.post_idem("/api/v1/projects/acme/wallet/debit", {"amount": "1000", "reason": "r"})
    assert response.status_code == 402 and response.json()["available"] == "100"
    # A reservation beyond the wallet (both callers: the platform key by slug and a staff session).
    response = reserve(platform, amount="1000")
    assert response.status_code == 402 and response.json()["available"] == "100"
    # A reservation beyond the month's budget: what is left of it.
    Budget.objects.create(project=project, hard_limit=credits_to_micros("30"))
    reserve(platform, amount="10")
    response = reserve(platform, amount="25")
    body = response.json()
    assert (response.status_code, body["error"], body["available"]) == (402, "budget_exceeded", "20")


def test_the_ledger_refusal_itself_carries_available(project):
    # Other callers of the ledger than wallet_debit get the figure too (it was only added by wallet_debit).
    with pytest.raises(InsufficientCredits) as refused:
        ledger.transfer(project=project, direction="out", system_code=Account.System.ADJUSTMENTS, amount=credits_to_micros("500"),
                        kind=Transfer.Kind.DEBIT, idempotency_key="t-402", require_funds=True)
    assert refused.value.as_body()["available"] == "100"


def test_a_402_cannot_be_raised_without_available():
    for refusal in (InsufficientCredits, BudgetExceeded):
        with pytest.raises(TypeError):
            refusal("no figure")
