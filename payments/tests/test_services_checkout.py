"""checkout_session_create against a local fake of Stripe's API: what Stripe receives, write-ahead, refusals."""

import pytest

from creditservice.lib.errors import ServiceUnavailable, ValidationFailed
from creditservice.lib.money import credits_to_micros
from payments import services
from payments.models import CheckoutSession
from wallets.idempotency import KeyReused
from wallets.tests.factories import ProjectFactory

SUCCESS = "https://portal.example.com/portal/acme/topup/done"
CANCEL = "https://portal.example.com/portal/acme/"


def create(project, credits="25", key="key-1", **overrides):
    arguments = {"project": project, "amount": credits_to_micros(credits), "actor": "user:7", "idempotency_key": key,
                 "success_url": SUCCESS, "cancel_url": CANCEL, **overrides}
    return services.checkout_session_create(**arguments)


def test_it_creates_a_payment_session_with_what_stripe_needs(fake_stripe, project):
    session = create(project)

    [request] = fake_stripe.created_sessions
    params = request.params
    assert params["mode"] == "payment"
    [item] = params["line_items"]
    assert item["quantity"] == "1"
    assert item["price_data"]["currency"] == "usd"
    assert item["price_data"]["unit_amount"] == "2500"
    assert item["price_data"]["product_data"]["name"] == "25 credits for Acme"
    assert params["client_reference_id"] == "acme"
    assert params["metadata"] == {"project": "acme", "credits": "25", "checkout_session_row": str(session.id)}
    assert params["payment_intent_data"]["metadata"] == params["metadata"]
    assert params["success_url"] == SUCCESS + "?session_id={CHECKOUT_SESSION_ID}"
    assert params["cancel_url"] == CANCEL
    assert request.headers["authorization"] == "Bearer sk_test_fake"
    assert request.idempotency_key == services.stripe_idempotency_key(session)
    assert request.idempotency_key.startswith(f"v1:checkout:{session.id}:")

    assert session.status == CheckoutSession.Status.OPEN
    assert session.stripe_session_id.startswith("cs_test_")
    assert session.url == f"{fake_stripe.base_url}/pay/{session.stripe_session_id}"
    assert (session.amount, session.currency, session.currency_amount) == (25_000_000, "usd", 2500)
    assert session.created_by == "user:7"
    assert not session.funded


def test_a_success_url_with_a_query_gets_the_session_id_appended(fake_stripe, project):
    create(project, success_url="https://example.com/done?from=portal")
    assert fake_stripe.created_sessions[0].params["success_url"] == (
        "https://example.com/done?from=portal&session_id={CHECKOUT_SESSION_ID}")


def test_the_same_key_returns_the_same_top_up_without_calling_stripe_again(fake_stripe, project):
    first = create(project, key="same")
    again = create(project, key="same")
    assert again.id == first.id and again.stripe_session_id == first.stripe_session_id
    assert len(fake_stripe.created_sessions) == 1
    assert CheckoutSession.objects.count() == 1


def test_the_same_key_for_another_amount_is_refused(fake_stripe, project):
    create(project, key="same")
    with pytest.raises(KeyReused):
        create(project, credits="30", key="same")


def test_a_failed_stripe_call_leaves_the_row_pending_and_a_retry_resumes_it(fake_stripe, project):
    fake_stripe.fail_next.append((400, "Something went wrong"))
    with pytest.raises(ServiceUnavailable) as refused:
        create(project, key="retry")
    assert refused.value.code == "stripe_unavailable"
    row = CheckoutSession.objects.get()
    assert row.status == CheckoutSession.Status.PENDING and row.stripe_session_id is None
    assert "Something went wrong" in row.error

    session = create(project, key="retry")
    assert session.id == row.id and session.status == CheckoutSession.Status.OPEN
    # Both calls carried the key built from the same row, so Stripe could not have made two sessions.
    keys = {r.idempotency_key for r in fake_stripe.created_sessions}
    assert keys == {services.stripe_idempotency_key(session)}
    assert len(fake_stripe.sessions) == 1


def test_without_a_secret_key_top_ups_are_disabled(fake_stripe, project, settings):
    settings.STRIPE_SECRET_KEY = ""
    with pytest.raises(ServiceUnavailable) as refused:
        create(project)
    assert refused.value.code == "billing_disabled" and refused.value.status_code == 503
    assert not CheckoutSession.objects.exists()
    assert fake_stripe.requests == []


@pytest.mark.parametrize("credits", ["4.99", "10000.01"])
def test_amounts_outside_the_bounds_are_refused(fake_stripe, project, credits):
    with pytest.raises(ValidationFailed) as refused:
        create(project, credits=credits)
    assert "between 5 and 10000 credits" in str(refused.value.detail["amount"])
    assert not CheckoutSession.objects.exists()
    assert fake_stripe.requests == []


def test_an_amount_that_is_not_whole_cents_is_refused_not_rounded(fake_stripe, project):
    with pytest.raises(ValidationFailed):
        create(project, credits="10.005")
    assert not CheckoutSession.objects.exists()


def test_the_price_follows_credits_per_currency_unit(fake_stripe, settings, db):
    settings.CREDITS_PER_CURRENCY_UNIT = "2"
    session = create(ProjectFactory(slug="duo"), credits="25")
    assert session.currency_amount == 1250
    assert fake_stripe.created_sessions[0].params["line_items"][0]["price_data"]["unit_amount"] == "1250"


def test_a_zero_decimal_currency_is_charged_in_whole_units(fake_stripe, settings, db):
    settings.STRIPE_CURRENCY = "JPY"
    settings.CREDITS_PER_CURRENCY_UNIT = "0.01"  # 1 yen buys 0.01 credits
    session = create(ProjectFactory(slug="tokyo"), credits="10")
    assert (session.currency, session.currency_amount) == ("jpy", 1000)


def test_a_session_can_be_read_back_from_stripe(fake_stripe, project):
    from payments import stripe_client

    session = create(project)
    fetched = stripe_client.checkout_session_retrieve(session.stripe_session_id)
    assert (fetched["id"], fetched["status"], fetched["amount_total"]) == (session.stripe_session_id, "open", 2500)
    assert fetched["metadata"]["checkout_session_row"] == str(session.id)
