"""POST/GET /api/v1/projects/{slug}/checkout-sessions: who may top up, bounds, idempotency, billing off."""

import pytest

from creditservice.testing.fixtures import ServiceClient
from payments.models import CheckoutSession
from wallets.models import IdempotencyRecord
from wallets.tests.factories import ProjectFactory, member, scoped_key

URL = "/api/v1/projects/acme/checkout-sessions"


def test_a_platform_key_starts_a_top_up(platform, project, fake_stripe):
    response = platform.post_idem(URL, {"amount": "25"})
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["id"].startswith("cs_test_")
    assert body["url"] == f"{fake_stripe.base_url}/pay/{body['id']}"
    assert (body["amount"], body["currency"], body["currency_amount"], body["status"]) == ("25", "usd", "25.00", "open")
    [request] = fake_stripe.created_sessions
    assert request.params["client_reference_id"] == "acme"
    assert request.params["success_url"].startswith("http://127.0.0.1:")
    # By default the customer comes back to the portal's top-up pages.
    assert request.params["success_url"].endswith("/portal/acme/topup/success?session_id={CHECKOUT_SESSION_ID}")
    assert request.params["cancel_url"].endswith("/portal/acme/topup/cancel")


def test_the_caller_may_choose_where_stripe_sends_the_customer_back(platform, project, fake_stripe, settings):
    settings.CHECKOUT_RETURN_ORIGINS = ["https://app.example.com"]
    response = platform.post_idem(URL, {"amount": "25", "success_url": "https://app.example.com/paid",
                                        "cancel_url": "https://app.example.com/billing"})
    assert response.status_code == 201
    params = fake_stripe.created_sessions[0].params
    assert params["success_url"] == "https://app.example.com/paid?session_id={CHECKOUT_SESSION_ID}"
    assert params["cancel_url"] == "https://app.example.com/billing"


def test_a_member_and_a_scoped_key_may_top_up_their_project(client, project, fake_stripe):
    client.force_login(member(project))
    response = client.post(URL, {"amount": "10"}, content_type="application/json", HTTP_IDEMPOTENCY_KEY="m-1")
    assert response.status_code == 201, response.json()
    assert CheckoutSession.objects.get().created_by.startswith("user:")
    response = ServiceClient(scoped_key(project)).post_idem(URL, {"amount": "10"})
    assert response.status_code == 201
    assert CheckoutSession.objects.count() == 2


def test_a_member_of_another_project_gets_404_and_nothing_is_made(client, project, fake_stripe):
    other = ProjectFactory(slug="other")
    client.force_login(member(other))
    response = client.post(URL, {"amount": "10"}, content_type="application/json", HTTP_IDEMPOTENCY_KEY="x-1")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"
    own = ProjectFactory(slug="mine")
    assert ServiceClient(scoped_key(own)).post_idem(URL, {"amount": "10"}).status_code == 404
    assert not CheckoutSession.objects.exists()
    assert fake_stripe.requests == []


def test_a_session_of_another_project_cannot_be_read(platform, project, fake_stripe):
    session_id = platform.post_idem(URL, {"amount": "25"}).json()["id"]
    ProjectFactory(slug="other")
    other = ServiceClient(scoped_key(ProjectFactory(slug="third")))
    assert other.get(f"{URL}/{session_id}").status_code == 404
    assert platform.get(f"/api/v1/projects/other/checkout-sessions/{session_id}").status_code == 404


def test_anonymous_callers_are_refused(anonymous, project, fake_stripe):
    assert anonymous.post_idem(URL, {"amount": "25"}).status_code == 401


@pytest.mark.parametrize("amount", ["4.99", "10000.01", "0", "-5", "10.005", "abc", 25.5])
def test_amounts_outside_the_rules_are_a_400_that_writes_nothing(platform, project, fake_stripe, amount):
    response = platform.post_idem(URL, {"amount": amount})
    assert response.status_code == 400, response.json()
    assert response.json()["error"] == "validation_error"
    assert "amount" in response.json()["detail"]
    assert not CheckoutSession.objects.exists() and not IdempotencyRecord.objects.exists()
    assert fake_stripe.requests == []


def test_unknown_fields_and_bad_urls_are_refused(platform, project, fake_stripe):
    assert platform.post_idem(URL, {"amount": "25", "credits": "25"}).status_code == 400
    assert platform.post_idem(URL, {"amount": "25", "success_url": "javascript:alert(1)"}).status_code == 400
    assert not CheckoutSession.objects.exists()


def test_the_idempotency_key_is_required(platform, project, fake_stripe):
    response = platform.post(URL, {"amount": "25"}, format="json")
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["detail"]


def test_a_replay_answers_the_same_session_and_stripe_is_called_once(platform, project, fake_stripe):
    first = platform.post_idem(URL, {"amount": "25"}, key="same")
    again = platform.post_idem(URL, {"amount": "25"}, key="same")
    assert again.status_code == first.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert len(fake_stripe.created_sessions) == 1
    assert CheckoutSession.objects.count() == 1
    other = platform.post_idem(URL, {"amount": "30"}, key="same")
    assert other.status_code == 422


def test_without_stripe_configured_the_api_answers_503_billing_disabled(platform, project, settings):
    settings.STRIPE_SECRET_KEY = ""
    response = platform.post_idem(URL, {"amount": "25"})
    assert response.status_code == 503
    assert response.json()["error"] == "billing_disabled"
    assert not CheckoutSession.objects.exists() and not IdempotencyRecord.objects.exists()
    # Everything else keeps working.
    assert platform.get("/api/v1/projects/acme/wallet").status_code == 200


def test_an_unreachable_stripe_is_a_503_and_the_key_can_be_retried(platform, project, fake_stripe):
    fake_stripe.fail_next.append((400, "No such price"))
    response = platform.post_idem(URL, {"amount": "25"}, key="k")
    assert response.status_code == 503
    assert response.json()["error"] == "stripe_unavailable"
    retry = platform.post_idem(URL, {"amount": "25"}, key="k")
    assert retry.status_code == 201
    assert CheckoutSession.objects.get().status == "open"


def test_get_shows_whether_the_top_up_was_funded(platform, project, fake_stripe, client):
    from payments.tests.signing import signed_body

    created = platform.post_idem(URL, {"amount": "25"}).json()
    body = platform.get(f"{URL}/{created['id']}").json()
    assert (body["status"], body["funded"], body["funded_at"]) == ("open", False, None)

    fake_stripe.deliver_on_pay = False
    fake_stripe.pay(created["id"])
    payload, signature = signed_body(fake_stripe.event("checkout.session.completed", fake_stripe.sessions[created["id"]]))
    assert client.post("/stripe/webhook", payload, content_type="application/json",
                       HTTP_STRIPE_SIGNATURE=signature).status_code == 200

    body = platform.get(f"{URL}/{created['id']}").json()
    assert (body["status"], body["funded"]) == ("funded", True)
    assert body["funded_at"]
    assert platform.get("/api/v1/projects/acme/wallet").json()["balance"] == "125"
    # By our row id too, and in the project's list.
    row_id = CheckoutSession.objects.get().id
    assert platform.get(f"{URL}/{row_id}").json()["id"] == created["id"]
    assert [s["id"] for s in platform.get(URL).json()] == [created["id"]]


def test_an_unknown_session_is_404(platform, project):
    assert platform.get(f"{URL}/cs_test_nope").status_code == 404


@pytest.mark.parametrize("session_id", ["²", "٣", "99999999999999999999", "0"])
def test_a_session_id_that_is_no_id_of_ours_is_a_404(platform, project, fake_stripe, session_id):
    platform.post_idem(URL, {"amount": "25"})
    response = platform.get(f"{URL}/{session_id}")
    assert response.status_code == 404 and response.json()["error"] == "not_found"
