"""GET /gateway/authorize: the gateway's subrequest before each call."""

import pytest
from django.test import Client
from django.utils import timezone

from creditservice.lib.money import credits_to_micros
from gateway.models import GatewayCharge
from quotas.models import ResourceType
from quotas.services import budget_set
from wallets import services
from wallets.auth import api_key_create
from wallets.models import Grant, Project, Transfer
from wallets.tests.factories import ProjectFactory, fund, platform_key, scoped_key

from .helpers import authorize, metered_route, wallet_of

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme():
    return ProjectFactory(slug="acme", balance="10")


@pytest.fixture
def key(acme):
    return scoped_key(acme)


def test_a_metered_call_is_charged_once_through_the_ledger(acme, key):
    metered_route("/v1/", price=2_500_000)
    response = authorize(Client(), key, "/v1/chat?stream=1", request_id="r1")
    assert response.status_code == 204
    assert response["X-Credits-Project"] == "acme"
    assert response["X-Credits-Available"] == "7.5"
    assert response["X-Credits-Charged"] == "2.5"
    assert wallet_of(acme) == (7_500_000, 0)
    transfer = Transfer.objects.get(project=acme, kind=Transfer.Kind.USAGE)
    assert transfer.amount == 2_500_000 and transfer.reference.startswith("gateway:")


def test_a_repeated_request_id_is_not_charged_again(acme, key):
    metered_route("/v1/")
    for _ in range(3):
        response = authorize(Client(), key, "/v1/chat", request_id="same")
        assert response.status_code == 204
    assert response["X-Credits-Replayed"] == "true"
    assert wallet_of(acme)[0] == 9_000_000
    assert GatewayCharge.objects.count() == 1


def test_the_clients_idempotency_key_wins_over_the_gateways_request_id(acme, key):
    metered_route("/v1/")
    for request_id in ("a", "b"):
        assert authorize(Client(), key, "/v1/chat", request_id=request_id,
                         HTTP_IDEMPOTENCY_KEY="client-key").status_code == 204
    assert wallet_of(acme)[0] == 9_000_000


def test_a_request_id_replayed_for_another_call_is_refused(acme, key):
    metered_route("/v1/")
    assert authorize(Client(), key, "/v1/chat", HTTP_IDEMPOTENCY_KEY="k").status_code == 204
    response = authorize(Client(), key, "/v1/other", HTTP_IDEMPOTENCY_KEY="k")
    assert response.status_code == 403
    assert response["X-Credits-Error"] == "request_id_reused"


def test_a_call_no_route_meters_is_allowed_without_a_charge(acme, key):
    metered_route("/v1/chat")
    for uri in ("/health", "/v1/chats", "/v2/chat"):
        response = authorize(Client(), key, uri)
        assert response.status_code == 204, uri
        assert response["X-Credits-Project"] == "acme"
        assert "X-Credits-Available" not in response
    assert wallet_of(acme)[0] == 10_000_000


def test_the_longest_prefix_and_then_the_exact_method_win(acme, key):
    metered_route("/v1/", price=1_000_000)
    metered_route("/v1/images", price=3_000_000)
    metered_route("/v1/images", price=5_000_000, method="POST")
    assert authorize(Client(), key, "/v1/images/x", method="GET")["X-Credits-Charged"] == "3"
    assert authorize(Client(), key, "/v1/images/x", method="POST")["X-Credits-Charged"] == "5"
    assert authorize(Client(), key, "/v1/chat", method="POST")["X-Credits-Charged"] == "1"


def test_a_path_spelled_around_the_route_is_still_metered(acme, key):
    metered_route("/v1/chat")
    for uri in ("/v1//chat", "/v1/./chat", "/v1/x/../chat", "/v1/%63hat"):
        assert authorize(Client(), key, uri)["X-Credits-Charged"] == "1", uri


def test_without_credits_the_call_is_denied_with_the_reason_and_nothing_is_charged(acme, key):
    metered_route("/v1/", price=11_000_000)
    response = authorize(Client(), key)
    assert response.status_code == 403
    assert response["X-Credits-Error"] == "insufficient_credits"
    assert response["X-Credits-Available"] == "10"
    assert response.json()["error"] == "insufficient_credits"
    assert wallet_of(acme)[0] == 10_000_000 and not GatewayCharge.objects.exists()


def test_a_denied_request_id_is_charged_once_it_is_funded(acme, key):
    metered_route("/v1/", price=11_000_000)
    assert authorize(Client(), key, request_id="r").status_code == 403
    fund(acme, "5")
    assert authorize(Client(), key, request_id="r").status_code == 204
    assert wallet_of(acme)[0] == 4_000_000


def test_a_budget_at_its_hard_limit_denies(acme, key):
    metered_route("/v1/", price=1_000_000)
    budget_set(project_id=acme.id, hard_limit=2_000_000, soft_limit=None)
    assert authorize(Client(), key).status_code == 204
    assert authorize(Client(), key).status_code == 204
    response = authorize(Client(), key)
    assert response.status_code == 403
    assert response["X-Credits-Error"] == "budget_exceeded"
    assert wallet_of(acme)[0] == 8_000_000


def test_a_suspended_project_is_denied(acme, key):
    metered_route("/v1/")
    Project.objects.filter(id=acme.id).update(status=Project.Status.SUSPENDED)
    response = authorize(Client(), key)
    assert response.status_code == 403
    assert response["X-Credits-Error"] == "project_suspended"
    assert wallet_of(acme)[0] == 10_000_000


@pytest.mark.parametrize("header", [None, "Bearer cs_unknown", "Basic abc"])
def test_an_unknown_or_missing_key_is_401(acme, header):
    metered_route("/v1/")
    extra = {} if header is None else {"HTTP_AUTHORIZATION": header}
    response = authorize(Client(), None, **extra)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthenticated"


def test_a_revoked_key_is_401(acme):
    metered_route("/v1/")
    api_key, raw = api_key_create(name="gone", project=acme)
    api_key.revoked_at = timezone.now()
    api_key.save(update_fields=["revoked_at"])
    assert authorize(Client(), raw).status_code == 401


def test_a_platform_key_is_401_it_names_no_project(acme):
    assert authorize(Client(), platform_key()).status_code == 401


def test_without_the_original_uri_or_a_request_id_it_is_a_400(acme, key):
    client = Client()
    assert client.get("/gateway/authorize", HTTP_AUTHORIZATION=f"Bearer {key}",
                      HTTP_X_REQUEST_ID="r").status_code == 400
    response = client.get("/gateway/authorize", HTTP_AUTHORIZATION=f"Bearer {key}", HTTP_X_ORIGINAL_URI="/v1/x")
    assert response.status_code == 400 and response.json()["error"] == "validation_error"


def test_envoy_style_the_original_method_and_path_are_the_check_requests_own(acme, key):
    metered_route("/v1/chat", price=2_000_000, method="POST")
    response = Client().post("/gateway/authorize/v1/chat", HTTP_AUTHORIZATION=f"Bearer {key}",
                             HTTP_X_REQUEST_ID="envoy-1")
    assert response.status_code == 204 and response["X-Credits-Charged"] == "2"


def test_a_key_charges_only_its_own_project(acme, key):
    """Tenant isolation: a call names no project; whatever it says, the key's own project pays."""
    other = ProjectFactory(slug="globex", balance="10")
    metered_route("/v1/")
    response = authorize(Client(), key, "/v1/projects/globex", HTTP_X_CREDITS_PROJECT="globex")
    assert response["X-Credits-Project"] == "acme"
    assert wallet_of(acme)[0] == 9_000_000 and wallet_of(other)[0] == 10_000_000


@pytest.mark.parametrize(("header", "value"), [
    ("HTTP_X_REQUEST_ID", "r" * 252), ("HTTP_IDEMPOTENCY_KEY", "k" * 251), ("HTTP_X_REQUEST_ID", "a\x01b"),
    ("HTTP_X_ORIGINAL_URI", "/v1/" + "x" * 8200), ("HTTP_X_ORIGINAL_METHOD", "M" * 17),
])
def test_a_header_beyond_its_bound_is_a_400_that_charges_nothing(acme, key, header, value):
    metered_route("/v1/")
    response = authorize(Client(), key, **{header: value})
    assert response.status_code == 400 and response.json()["error"] == "validation_error"
    assert wallet_of(acme)[0] == 10_000_000


def test_request_ids_at_their_bound_are_taken(acme, key):
    metered_route("/v1/")
    assert authorize(Client(), key, request_id="r" * 251).status_code == 204
    assert authorize(Client(), key, HTTP_IDEMPOTENCY_KEY="k" * 250).status_code == 204
    assert GatewayCharge.objects.filter(project=acme).count() == 2


def test_a_call_is_paid_only_by_grants_that_apply_to_its_resource_type(client):
    ResourceType.objects.get_or_create(code="vm", defaults={"display_name": "vm", "unit": "vm"})
    acme = ProjectFactory(slug="acme", balance="1")  # a grant of 1 for every type
    services.grant_create(project=acme, category="promotional", amount=credits_to_micros("5"), reason="vm only",
                          actor="system", idempotency_key="promo-vm", resource_types=["vm"])
    key = scoped_key(acme)
    metered_route("/v1/")  # api_call
    assert authorize(client, key).status_code == 204
    refused = authorize(client, key)
    assert refused["X-Credits-Error"] == "insufficient_credits"
    # What the refusal reports is what the decision counted: the vm-only credits are not this call's.
    assert refused["X-Credits-Available"] == "0" and refused.json()["available"] == "0"
    assert Grant.objects.get(reason="vm only").remaining == credits_to_micros("5")
    assert wallet_of(acme) == (credits_to_micros("5"), 0)
