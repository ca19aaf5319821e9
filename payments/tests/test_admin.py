"""Staff screens: read-only lists with filters, and "reprocess" applying a stored event again."""

import pytest
from django.contrib.auth import get_user_model

from creditservice.lib.money import credits_to_micros
from payments import services
from payments.models import CheckoutSession, StripeEvent
from payments.tests.signing import signed_body
from wallets.models import Account


@pytest.fixture
def staff_client(client, db):
    client.force_login(get_user_model().objects.create_superuser("boss", "boss@example.com", "pw-for-tests-1"))
    return client


def test_the_lists_render_with_their_filters(staff_client, fake_stripe, project):
    services.checkout_session_create(project=project, amount=credits_to_micros("25"), actor="user:1",
                                     idempotency_key="a", success_url="https://e.com/ok", cancel_url="https://e.com/")
    page = staff_client.get("/admin/payments/checkoutsession/?disputed__exact=0&status__exact=open")
    assert page.status_code == 200 and b"25.00 USD" in page.content
    assert staff_client.get("/admin/payments/stripeevent/?status__exact=failed").status_code == 200
    row = CheckoutSession.objects.get()
    assert staff_client.get(f"/admin/payments/checkoutsession/{row.id}/change/").status_code == 200
    assert staff_client.get("/admin/payments/checkoutsession/add/").status_code == 403


def test_reprocess_applies_a_failed_event_once_its_cause_is_fixed(staff_client, fake_stripe, project, client):
    fake_stripe.deliver_on_pay = False
    row = services.checkout_session_create(project=project, amount=credits_to_micros("25"), actor="user:1",
                                           idempotency_key="b", success_url="https://e.com/ok",
                                           cancel_url="https://e.com/")
    fake_stripe.pay(row.stripe_session_id)
    session = fake_stripe.sessions[row.stripe_session_id]
    # Stripe's total differs from ours, so the event fails and nothing is funded.
    payload, signature = signed_body(fake_stripe.event("checkout.session.completed", dict(session, amount_total=1)))
    staff_client.post("/stripe/webhook", payload, content_type="application/json", HTTP_STRIPE_SIGNATURE=signature)
    event = StripeEvent.objects.get()
    assert event.status == StripeEvent.Status.FAILED
    # Staff fix the cause (here: the stored payload), then reprocess from the list.
    StripeEvent.objects.filter(id=event.id).update(payload=dict(event.payload, data={"object": session}))

    response = staff_client.post("/admin/payments/stripeevent/", {
        "action": "reprocess", "_selected_action": [event.id]}, follow=True)
    assert response.status_code == 200
    assert b"Reprocessed: 1 processed." in response.content
    assert StripeEvent.objects.get().status == StripeEvent.Status.PROCESSED
    assert Account.objects.get(project=project).balance == 125_000_000


def test_the_reprocess_command_applies_failed_and_interrupted_events(fake_stripe, project):
    from io import StringIO

    from django.core.management import call_command

    fake_stripe.deliver_on_pay = False
    row = services.checkout_session_create(project=project, amount=credits_to_micros("25"), actor="user:1",
                                           idempotency_key="c", success_url="https://e.com/ok",
                                           cancel_url="https://e.com/")
    fake_stripe.pay(row.stripe_session_id)
    # Stored, then the process died before applying it.
    StripeEvent.objects.create(stripe_event_id="evt_interrupted", type="checkout.session.completed",
                               payload=fake_stripe.event("checkout.session.completed",
                                                         fake_stripe.sessions[row.stripe_session_id]))
    out = StringIO()
    call_command("stripe_reprocess", "--stuck-after=0", stdout=out)
    assert "1 processed" in out.getvalue()
    assert Account.objects.get(project=project).balance == 125_000_000
    call_command("stripe_reprocess", stdout=out)
    assert Account.objects.get(project=project).balance == 125_000_000
