from datetime import UTC, datetime
from decimal import Decimal

from django.db import migrations

# Shipped defaults in credits; staff add new versions in the admin. Duration types are priced per
# unit-hour, egress per GiB. In force from 2020 so any window the platform ever bills has a price.
SHIPPED_FROM = datetime(2020, 1, 1, tzinfo=UTC)
SHIPPED = [
    # code, unit price, per
    ("vm", "0.04", "unit_hour"),
    ("vcpu", "0.02", "unit_hour"),
    ("memory_gib", "0.005", "unit_hour"),
    ("storage_gib", "0.0001", "unit_hour"),
    ("gpu", "1.2", "unit_hour"),
    ("ip_address", "0.005", "unit_hour"),
    ("object_storage_gib", "0.00003", "unit_hour"),
    ("network_egress_gib", "0.01", "unit"),
    ("load_balancer", "0.025", "unit_hour"),
    ("k8s_cluster", "0.1", "unit_hour"),
]


def _stored(Price, unit_price: str):
    """The price as the model given stores it: decimal credits here, integer pico-credits since 0005
    (tests run ship() against today's models to put the shipped prices back after a flush)."""
    if Price._meta.get_field("unit_price").get_internal_type() == "BigIntegerField":
        return int(Decimal(unit_price) * 10**12)
    return Decimal(unit_price)


def ship(apps, schema_editor):
    ResourceType = apps.get_model("quotas", "ResourceType")
    Price = apps.get_model("metering", "Price")
    for code, unit_price, per in SHIPPED:
        resource_type = ResourceType.objects.filter(code=code).first()
        if resource_type is None or Price.objects.filter(resource_type=resource_type).exists():
            continue
        Price.objects.create(resource_type=resource_type, unit_price=_stored(Price, unit_price), per=per,
                             effective_from=SHIPPED_FROM, created_by="shipped default")


class Migration(migrations.Migration):
    dependencies = [("metering", "0001_initial"), ("quotas", "0002_shipped_resource_types")]
    operations = [migrations.RunPython(ship, migrations.RunPython.noop)]
