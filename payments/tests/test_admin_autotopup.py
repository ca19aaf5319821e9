"""Staff screens of auto top-up: read-only lists; "turn off" only with payments.change_autotopup."""

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from payments.models import AutoTopUp, AutoTopUpCharge
from wallets.tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def row(project) -> AutoTopUp:
    AutoTopUpCharge.objects.create(project=project, crossing=1, available_before=5_000_000, status="skipped",
                                   skip_reason="the monthly cap: 500 of 500 credits charged this month")
    return AutoTopUp.objects.create(project=project, enabled=True, threshold=10_000_000, target=50_000_000,
                                    monthly_cap=500_000_000, stripe_payment_method_id="pm_1", consent_by="user:1",
                                    consent_at="2026-12-01T00:00:00Z", consent_terms_version="v")


def staff(*codenames: str) -> Client:
    user = UserFactory(is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="payments", codename__in=codenames))
    client = Client()
    client.force_login(user)
    return client


def turn_off(client: Client, row: AutoTopUp):
    return client.post("/admin/payments/autotopup/", {"action": "turn_off", "_selected_action": [row.id]})


def test_staff_with_view_permission_read_settings_and_charges_but_cannot_turn_off(row):
    client = staff("view_autotopup", "view_autotopupcharge")
    assert client.get("/admin/payments/autotopup/").status_code == 200
    page = client.get("/admin/payments/autotopupcharge/")
    assert page.status_code == 200 and b"monthly cap" in page.content
    disputed = client.get("/admin/payments/autotopupcharge/?disputed__exact=1")
    assert disputed.status_code == 200 and b"monthly cap" not in disputed.content
    assert client.get(f"/admin/payments/autotopup/{row.id}/change/").status_code == 200
    assert client.get("/admin/payments/autotopup/add/").status_code == 403
    turn_off(client, row)
    assert AutoTopUp.objects.get(id=row.id).enabled


def test_staff_with_change_permission_turn_it_off(row):
    response = turn_off(staff("view_autotopup", "change_autotopup"), row)
    assert response.status_code == 302
    row.refresh_from_db()
    assert not row.enabled and row.disabled_reason.startswith("turned off by staff")


def test_staff_without_permissions_see_nothing(row):
    assert staff().get("/admin/payments/autotopup/").status_code == 403
