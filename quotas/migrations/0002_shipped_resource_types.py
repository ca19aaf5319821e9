from django.db import migrations

SHIPPED = [
    # code, display name, unit, metering
    ("vm", "Virtual machine", "vm", "duration"),
    ("vcpu", "vCPU", "vCPU", "duration"),
    ("memory_gib", "Memory", "GiB", "duration"),
    ("storage_gib", "Block storage", "GiB", "duration"),
    ("gpu", "GPU", "gpu", "duration"),
    ("ip_address", "Public IP address", "ip", "duration"),
    ("object_storage_gib", "Object storage", "GiB", "duration"),
    ("network_egress_gib", "Network egress", "GiB", "count"),
    ("load_balancer", "Load balancer", "lb", "duration"),
    ("k8s_cluster", "Kubernetes cluster", "cluster", "duration"),
]


def ship(apps, schema_editor):
    ResourceType = apps.get_model("quotas", "ResourceType")
    for code, display_name, unit, metering in SHIPPED:
        ResourceType.objects.get_or_create(
            code=code, defaults={"display_name": display_name, "unit": unit, "metering": metering}
        )


class Migration(migrations.Migration):
    dependencies = [("quotas", "0001_initial")]
    operations = [migrations.RunPython(ship, migrations.RunPython.noop)]
