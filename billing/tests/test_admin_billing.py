"""Staff screens: run billing for a window, see its lines, redeliver webhooks."""

import pytest
from django.contrib.auth import get_user_model

from billing.models import BillingRun, Charge, WebhookDelivery, WebhookEndpoint
from wallets.tests.factories import ProjectFactory

from .conftest import WINDOW
from .factories import bill, usage

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    user = get_user_model().objects.create_superuser("staff", "staff@example.com", "pw-for-tests-1")
    client.force_login(user)
    return client


def test_staff_run_billing_for_a_window_from_the_admin(clock, staff):
    acme = ProjectFactory(slug="acme", balance="100")
    usage(acme, "vm", WINDOW, "1")
    page = staff.get("/admin/billing/billingrun/run/")
    assert page.status_code == 200
    response = staff.post("/admin/billing/billingrun/run/", {"window_start": "2026-11-22 04:00:00", "in_background": ""})
    assert response.status_code == 302
    run = BillingRun.objects.get()
    assert run.status == "succeeded" and run.trigger.startswith("admin:")
    assert Charge.objects.filter(run=run).count() == 1


def test_a_window_that_is_not_closed_is_refused_by_the_form(clock, staff):
    response = staff.post("/admin/billing/billingrun/run/", {"window_start": "2026-11-22 05:00:00"})
    assert response.status_code == 200 and b"not closed yet" in response.content
    assert not BillingRun.objects.exists()


def test_staff_see_a_run_and_its_charges(clock, staff):
    acme = ProjectFactory(slug="acme", balance="100")
    usage(acme, "vm", WINDOW, "1")
    run = bill(WINDOW).run
    assert b"charges of this run" in staff.get("/admin/billing/billingrun/").content
    assert staff.get(f"/admin/billing/billingrun/{run.id}/change/").status_code == 200
    listing = staff.get(f"/admin/billing/charge/?run__id__exact={run.id}")
    assert listing.status_code == 200 and acme.slug.encode() in listing.content
    charge = Charge.objects.get()
    assert staff.get(f"/admin/billing/charge/{charge.id}/change/").status_code == 200


def test_staff_redeliver_a_webhook(clock, staff, receiver, django_capture_on_commit_callbacks):
    endpoint = WebhookEndpoint.objects.create(url=receiver.url)
    delivery = WebhookDelivery.objects.create(endpoint=endpoint, event_id="evt_1", event_type="project.grace",
                                              payload={"id": "evt_1", "type": "project.grace"}, status="failed", attempts=8)
    with django_capture_on_commit_callbacks(execute=True):
        response = staff.post("/admin/billing/webhookdelivery/", {"action": "redeliver", "_selected_action": [delivery.id]})
    assert response.status_code == 302
    delivery.refresh_from_db()
    assert delivery.status == "delivered" and receiver.events() == ["project.grace"]
