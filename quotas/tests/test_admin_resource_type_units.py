"""Staff cannot change a resource type's metering kind or unit once it is priced or used: the next
billing run would fail every project of the type with unit_mismatch."""

from quotas.models import QuotaDefault, ResourceType


def _post(admin_client, resource_type, **changes):
    data = {"code": resource_type.code, "display_name": resource_type.display_name, "unit": resource_type.unit,
            "metering": resource_type.metering, "default_quota-TOTAL_FORMS": "0", "default_quota-INITIAL_FORMS": "0"}
    data.update(changes)
    return admin_client.post(f"/admin/quotas/resourcetype/{resource_type.pk}/change/", data)


def test_the_metering_kind_of_a_priced_type_cannot_change(admin_client, db):
    vm = ResourceType.objects.get(code="vm")  # shipped with a price
    response = _post(admin_client, vm, metering="count")
    assert response.status_code == 200
    assert "its metering cannot change" in response.content.decode()
    vm.refresh_from_db()
    assert vm.metering == "duration"


def test_the_unit_of_a_priced_type_cannot_change(admin_client, db):
    vm = ResourceType.objects.get(code="vm")
    response = _post(admin_client, vm, unit="VM")
    assert "its unit cannot change" in response.content.decode()
    assert ResourceType.objects.get(code="vm").unit == "vm"


def test_the_name_of_a_priced_type_can_change(admin_client, db):
    vm = ResourceType.objects.get(code="vm")
    assert _post(admin_client, vm, display_name="Virtual server").status_code == 302
    assert ResourceType.objects.get(code="vm").display_name == "Virtual server"


def test_a_new_type_without_prices_or_usage_can_still_change_its_metering(admin_client, db):
    fresh = ResourceType.objects.create(code="tpu", display_name="TPU", unit="tpu", metering="duration")
    QuotaDefault.objects.create(resource_type=fresh, limit=4_000_000)  # a default limit is no use
    assert _post(admin_client, fresh, metering="count").status_code == 302
    assert ResourceType.objects.get(code="tpu").metering == "count"
