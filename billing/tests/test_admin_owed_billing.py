"""Staff see what billing runs still owe, filter it, and (with the permission) retry it now."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from billing.models import BillingRun, Charge, OwedCharge
from billing.services import charging
from wallets.tests.factories import ProjectFactory

from .conftest import WINDOW
from .factories import bill, usage

pytestmark = pytest.mark.django_db


@pytest.fixture
def owing(clock, monkeypatch):
    """A run of WINDOW that could not charge `bad` (its writes fail until the test repairs them)."""
    good, bad = ProjectFactory(slug="good", balance="10"), ProjectFactory(slug="bad-wallet", balance="10")
    for project in (good, bad):
        usage(project, "vm", WINDOW, "1")
    real = charging.write_charges

    def write_charges(*, planned, **kwargs):
        if any(p.project_id == bad.id for p in planned):
            raise RuntimeError("wallet row is corrupt")
        return real(planned=planned, **kwargs)

    monkeypatch.setattr(charging, "write_charges", write_charges)
    run = bill(WINDOW).run
    assert run.status == BillingRun.Status.PARTIAL
    monkeypatch.undo()
    return OwedCharge.objects.get()


def _staff(client, *permissions: str):
    user = get_user_model().objects.create_user("ops", "ops@example.com", "pw-for-tests-1", is_staff=True)
    for codename in permissions:
        user.user_permissions.add(Permission.objects.get(content_type__app_label="billing", codename=codename))
    client.force_login(user)
    return client


def test_staff_see_what_a_run_still_owes_and_filter_it(owing, client):
    staff = _staff(client, "view_billingrun", "view_owedcharge")
    runs = staff.get("/admin/billing/billingrun/")
    assert runs.status_code == 200 and b"1 owed" in runs.content
    listing = staff.get("/admin/billing/owedcharge/?status__exact=owed")
    assert listing.status_code == 200
    assert b"bad-wallet" in listing.content and b"wallet row is corrupt" in listing.content
    assert b"bad-wallet" not in staff.get("/admin/billing/owedcharge/?past_cap=yes").content
    assert b"bad-wallet" in staff.get("/admin/billing/owedcharge/?past_cap=no").content
    assert staff.get(f"/admin/billing/owedcharge/{owing.id}/change/").status_code == 200


def test_retry_now_needs_its_permission(owing, client):
    staff = _staff(client, "view_owedcharge")
    assert b"retry_now" not in staff.get("/admin/billing/owedcharge/").content
    staff.post("/admin/billing/owedcharge/", {"action": "retry_now", "_selected_action": [owing.id]})
    owing.refresh_from_db()
    assert owing.status == OwedCharge.Status.OWED and owing.attempts == 1


def test_staff_with_the_permission_retry_owed_billing_now(owing, client):
    staff = _staff(client, "view_owedcharge", "retry_owedcharge")
    assert b"retry_now" in staff.get("/admin/billing/owedcharge/").content
    response = staff.post("/admin/billing/owedcharge/", {"action": "retry_now", "_selected_action": [owing.id]},
                          follow=True)
    assert b"1 retried: 1 charged, 0 still owed" in response.content
    owing.refresh_from_db()
    assert owing.status == OwedCharge.Status.CHARGED
    assert BillingRun.objects.get().status == BillingRun.Status.SUCCEEDED
    assert Charge.objects.filter(project_id=owing.project_id).count() == 1
