"""Staff read quantities and rates as decimals ("0.5 vm-hours at 0.04"), never as the micro-units and
pico-credits the database holds; they type limits and prices the same way."""

import pytest
from django.contrib.auth import get_user_model

from billing.models import Charge
from metering.models import UsageRecord
from quotas.models import Quota, QuotaDefault, Reservation, ResourceType
from wallets.tests.factories import ProjectFactory

from .conftest import WINDOW
from .factories import bill, usage

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    user = get_user_model().objects.create_superuser("staff", "staff@example.com", "pw-for-tests-1")
    client.force_login(user)
    return client


def test_charges_and_usage_show_decimal_quantities_and_rates(clock, staff):
    acme = ProjectFactory(slug="acme", balance="100")
    usage(acme, "vm", WINDOW, "0.5")
    bill(WINDOW)
    charge = Charge.objects.get()
    record = UsageRecord.objects.get()

    listing = staff.get("/admin/billing/charge/").content.decode()
    detail = staff.get(f"/admin/billing/charge/{charge.id}/change/").content.decode()
    usage_detail = staff.get(f"/admin/metering/usagerecord/{record.id}/change/").content.decode()

    for page in (listing, detail):
        assert "0.5" in page and "0.04" in page and "0.02" in page
        assert "500000" not in page and "40000000000" not in page
    assert "0.5" in usage_detail and "500000" not in usage_detail


def test_staff_see_reservation_quantities_and_set_limits_as_decimals(platform, staff):
    acme = ProjectFactory(slug="acme", balance="100")
    response = platform.post_idem("/api/v1/reservations", {"project": "acme", "resource_type": "vm",
                                                           "quantity": "0.25", "amount": "1"})
    reservation = Reservation.objects.get(id=response.json()["id"])
    page = staff.get(f"/admin/quotas/reservation/{reservation.id}/change/").content.decode()
    assert "0.25" in page and "250000" not in page

    project_page = staff.get(f"/admin/wallets/project/{acme.id}/change/").content.decode()
    assert "0.25" in project_page  # the quota's reserved, read-only in the inline
    assert Quota.objects.get(project=acme).reserved == 250_000

    vm = ResourceType.objects.get(code="vm")
    page = staff.get(f"/admin/quotas/resourcetype/{vm.id}/change/")
    assert page.status_code == 200
    QuotaDefault.objects.create(resource_type=vm, limit=2_500_000)
    assert 'value="2.5"' in staff.get(f"/admin/quotas/resourcetype/{vm.id}/change/").content.decode()
