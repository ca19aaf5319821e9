"""Admin: a price change adds a version; old versions, usage and events are read-only; retry now."""

from datetime import UTC, datetime, timedelta
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from metering.models import CollectionWindow, Price
from metering.tests.factories import metric_query, picos, resource_type, usage_record


@pytest.fixture
def staff(client, db):
    user = get_user_model().objects.create_superuser("root", "root@example.com", "pw-for-tests-1")
    client.force_login(user)
    return client


def add_price(staff, **fields):
    data = {"resource_type": resource_type("vm").id, "unit_price": "0.05", "per": "unit_hour",
            "effective_from_0": "", "effective_from_1": ""}
    start = fields.pop("effective_from", timezone.now() + timedelta(minutes=1))
    data.update(effective_from_0=start.strftime("%Y-%m-%d"), effective_from_1=start.strftime("%H:%M:%S"), **fields)
    return staff.post("/admin/metering/price/add/", data)


def test_adding_a_price_in_the_admin_adds_a_version_and_closes_the_old_one(staff):
    response = add_price(staff)
    assert response.status_code == 302, response.content.decode()[:2000]
    versions = list(Price.objects.filter(resource_type__code="vm").order_by("effective_from"))
    assert len(versions) == 2
    assert versions[0].effective_to == versions[1].effective_from
    assert versions[1].created_by.startswith("user:")


def test_a_backdated_price_is_refused_in_the_admin(staff):
    response = add_price(staff, effective_from=timezone.now() - timedelta(days=1))
    assert response.status_code == 200
    assert "cannot start in the past" in response.content.decode()
    assert Price.objects.filter(resource_type__code="vm").count() == 1


def test_a_per_unit_price_for_a_vm_is_refused_in_the_admin(staff):
    response = add_price(staff, per="unit")
    assert response.status_code == 200
    assert "billed in vm-hours" in response.content.decode()


def test_an_old_price_version_cannot_be_edited(staff):
    shipped = Price.objects.get(resource_type__code="vm")
    response = staff.post(f"/admin/metering/price/{shipped.id}/change/", {"unit_price": "0.0001", "per": "unit_hour"})
    assert response.status_code == 403
    shipped.refresh_from_db()
    assert shipped.unit_price == picos("0.04")
    assert staff.get(f"/admin/metering/price/{shipped.id}/change/").status_code == 200  # still viewable


def test_usage_records_are_read_only_and_listed(staff, project):
    record = usage_record(project, "vm", datetime(2026, 11, 22, tzinfo=UTC), datetime(2026, 11, 22, 1, tzinfo=UTC), "1")
    assert staff.get("/admin/metering/usagerecord/").status_code == 200
    assert staff.get("/admin/metering/usageevent/").status_code == 200
    assert staff.post(f"/admin/metering/usagerecord/{record.id}/change/", {"quantity": "0"}).status_code == 403
    assert staff.get("/admin/metering/usagerecord/add/").status_code == 403


def test_retry_now_collects_the_window_again(staff, django_capture_on_commit_callbacks):
    query = metric_query("vm", "x")
    start = datetime(2026, 11, 22, tzinfo=UTC)
    window = CollectionWindow.objects.create(metric_query=query, window_start=start, window_end=start + timedelta(hours=1),
                                             status="failed")
    with mock.patch("metering.collector.collect_window") as collect, django_capture_on_commit_callbacks(execute=True):
        response = staff.post("/admin/metering/collectionwindow/", {"action": "retry_now", "_selected_action": [window.id]})
    assert response.status_code == 302
    window.refresh_from_db()
    assert window.status == "pending"  # due again even if the queued task were lost
    collect.assert_called_once()
    assert collect.call_args.kwargs == {"metric_query": query, "window_start": start}
    for page in ("collectionwindow", "metricquery", "price"):
        assert staff.get(f"/admin/metering/{page}/").status_code == 200


def test_a_metric_query_whose_unit_does_not_fit_the_type_is_refused_in_the_admin(staff):
    data = {"resource_type": resource_type("network_egress_gib").id, "promql": "sum by (project) (x[{window}])",
            "project_label": "project", "result_unit": "seconds", "enabled": "on"}
    response = staff.post("/admin/metering/metricquery/add/", data)
    assert response.status_code == 200 and "billed in GiB" in response.content.decode()
    data["result_unit"] = "units"
    assert staff.post("/admin/metering/metricquery/add/", data).status_code == 302
