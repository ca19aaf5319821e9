"""Top-up from the portal: presets and custom amounts, bounds, the Stripe redirect, success and cancel pages."""

import re
from types import SimpleNamespace

import pytest

from creditservice.lib.errors import ServiceUnavailable, ValidationFailed
from creditservice.lib.money import credits_to_micros
from payments.models import CheckoutSession
from wallets import services as wallet_services
from wallets.models import Transfer

pytestmark = pytest.mark.django_db

TOKEN = "form-token-0123456789"


@pytest.fixture
def stripe_on(settings):
    settings.STRIPE_SECRET_KEY = "sk_test_portal"
    settings.TOPUP_MIN_CREDITS = "5"
    settings.TOPUP_MAX_CREDITS = "10000"
    settings.TOPUP_PRESETS = ["10", "25", "50", "100"]


@pytest.fixture
def checkout(monkeypatch):
    """Stands in for payments.services.checkout_session_create; records what the portal asked for."""
    calls: list[dict] = []

    def create(**kwargs):
        calls.append(kwargs)
        return SimpleNamespace(url=f"https://checkout.stripe.test/pay/cs_{len(calls)}", status="open")

    monkeypatch.setattr("portal.views.checkout_session_create", create)
    return calls


def test_without_stripe_the_buttons_are_disabled_with_a_reason(browser, project):
    html = browser.get("/portal/acme/").content.decode()
    assert "Card top-ups are not available" in html
    assert len(re.findall(r'<button type="submit" name="amount" value="\d+" class="button button-preset" disabled>', html)) == 4
    assert re.search(r"<button type=\"submit\" class=\"button button-primary\" disabled>Continue to payment", html)


def test_without_stripe_a_posted_top_up_is_refused_and_nothing_is_created(browser, project, checkout):
    response = browser.post("/portal/acme/topup", {"amount": "10", "token": TOKEN})
    assert response.status_code == 503
    assert "Card top-ups are not available" in response.content.decode()
    assert checkout == []


def test_presets_are_offered_as_buttons(browser, project, stripe_on):
    html = browser.get("/portal/acme/").content.decode()
    assert re.findall(r'name="amount" value="(\d+)"', html) == ["10", "25", "50", "100"]
    assert "Between 5 and 10,000 credits" in html
    assert "Card top-ups are not available" not in html


def test_a_preset_redirects_to_checkout_with_the_projects_session(browser, project, tenant, stripe_on, checkout):
    response = browser.post("/portal/acme/topup", {"amount": "25", "token": TOKEN})
    assert response.status_code == 303
    assert response["Location"] == "https://checkout.stripe.test/pay/cs_1"
    (call,) = checkout
    assert call["project"].slug == "acme"
    assert call["amount"] == credits_to_micros("25")
    assert call["actor"] == f"user:{tenant.pk}"
    assert call["success_url"] == "http://testserver/portal/acme/topup/success?session_id={CHECKOUT_SESSION_ID}"
    assert call["cancel_url"] == "http://testserver/portal/acme/topup/cancel"
    assert TOKEN in call["idempotency_key"]


def test_a_double_submit_of_one_form_uses_one_key(browser, project, stripe_on, checkout):
    browser.post("/portal/acme/topup", {"amount": "12.5", "token": TOKEN})
    browser.post("/portal/acme/topup", {"amount": "12.5", "token": TOKEN})
    browser.post("/portal/acme/topup", {"amount": "12.5", "token": TOKEN + "x"})
    assert checkout[0]["idempotency_key"] == checkout[1]["idempotency_key"]
    assert checkout[2]["idempotency_key"] != checkout[0]["idempotency_key"]


def test_each_rendered_form_has_its_own_token(browser, project, stripe_on):
    first = re.findall(r'name="token" value="([^"]+)"', browser.get("/portal/acme/").content.decode())
    second = re.findall(r'name="token" value="([^"]+)"', browser.get("/portal/acme/").content.decode())
    assert len(first) == 2 and len(set(first + second)) == 4


@pytest.mark.parametrize("amount, message", [
    ("4.99", "Top-ups are between 5 and 10,000 credits."),
    ("10000.01", "Top-ups are between 5 and 10,000 credits."),
    ("ten", "Enter an amount in credits"),
    ("-5", "Enter an amount in credits"),
    ("", "This field is required."),
])
def test_an_amount_out_of_bounds_is_shown_beside_the_field(browser, project, stripe_on, checkout, amount, message):
    response = browser.post("/portal/acme/topup", {"amount": amount, "token": TOKEN})
    assert response.status_code == 400
    html = response.content.decode()
    assert message in html
    assert 'aria-invalid="true"' in html
    assert f'value="{amount}"' in html  # what the user typed stays in the field
    assert checkout == []


def test_a_refusal_from_payments_is_shown_beside_the_field(browser, project, stripe_on, monkeypatch):
    def refuse(**kwargs):
        raise ValidationFailed({"amount": ["10.001 credits is not a whole amount of USD"]})

    monkeypatch.setattr("portal.views.checkout_session_create", refuse)
    response = browser.post("/portal/acme/topup", {"amount": "10.001", "token": TOKEN})
    assert response.status_code == 400
    assert "not a whole amount of USD" in response.content.decode()


def test_stripe_unreachable_is_a_message_not_a_crash(browser, project, stripe_on, monkeypatch):
    def down(**kwargs):
        raise ServiceUnavailable("the payment provider could not be reached; try again", code="stripe_unavailable")

    monkeypatch.setattr("portal.views.checkout_session_create", down)
    response = browser.post("/portal/acme/topup", {"amount": "10", "token": TOKEN})
    assert response.status_code == 503
    assert "could not be reached" in response.content.decode()


def test_a_forged_token_is_refused(browser, project, stripe_on, checkout):
    response = browser.post("/portal/acme/topup", {"amount": "10", "token": "<script>"})
    assert response.status_code == 400
    assert checkout == []


def test_top_up_only_accepts_post(browser, project, stripe_on):
    assert browser.get("/portal/acme/topup").status_code == 405


def open_session(project, stripe_id="cs_test_abc", amount="25") -> CheckoutSession:
    return CheckoutSession.objects.create(
        project=project, stripe_session_id=stripe_id, idempotency_key=f"test:{stripe_id}",
        amount=credits_to_micros(amount), currency="usd", currency_amount=int(amount) * 100,
        status=CheckoutSession.Status.OPEN, url=f"https://checkout.stripe.test/pay/{stripe_id}",
        success_url="http://testserver/s", cancel_url="http://testserver/c", created_by="user:1",
    )


def mark_funded(session: CheckoutSession) -> None:
    transfer = wallet_services.wallet_credit(
        project=session.project, amount=session.amount, reason="card top-up", actor="system",
        idempotency_key=f"test:funding:{session.stripe_session_id}", system_code="stripe", kind=Transfer.Kind.TOP_UP,
    )
    CheckoutSession.objects.filter(id=session.id).update(status=CheckoutSession.Status.FUNDED, transfer=transfer)


def test_the_success_page_waits_for_the_webhook_then_shows_the_new_balance(browser, project):
    session = open_session(project)
    waiting = browser.get("/portal/acme/topup/success?session_id=cs_test_abc").content.decode()
    assert "Payment received, credits arriving" in waiting
    assert '<noscript><meta http-equiv="refresh"' in waiting
    assert "/portal/acme/topup/status?session_id=cs_test_abc" in waiting
    assert browser.get("/portal/acme/topup/status?session_id=cs_test_abc").json()["funded"] is False

    mark_funded(session)
    status = browser.get("/portal/acme/topup/status?session_id=cs_test_abc").json()
    assert status == {"status": "funded", "funded": True, "amount": "25", "balance": "125", "available": "125"}
    done = browser.get("/portal/acme/topup/success?session_id=cs_test_abc").content.decode()
    assert "Credits added" in done
    assert 'data-testid="new-balance">125<' in done
    assert "http-equiv" not in done and "<script>" not in done


def test_another_projects_session_is_not_found_on_the_success_page(browser, project):
    from wallets.tests.factories import ProjectFactory

    open_session(ProjectFactory(slug="other-co"), stripe_id="cs_test_other")
    assert browser.get("/portal/acme/topup/success?session_id=cs_test_other").status_code == 404
    assert browser.get("/portal/acme/topup/status?session_id=cs_test_other").status_code == 404
    assert browser.get("/portal/acme/topup/success").status_code == 404


def test_the_cancel_page_says_nothing_was_charged(browser, project):
    html = browser.get("/portal/acme/topup/cancel").content.decode()
    assert "Nothing was charged" in html
