from django.db import migrations


def ship(apps, schema_editor):
    """The resource type of a metered gateway route: one API call, counted."""
    ResourceType = apps.get_model("quotas", "ResourceType")
    ResourceType.objects.get_or_create(
        code="api_call", defaults={"display_name": "API call", "unit": "call", "metering": "count"}
    )


class Migration(migrations.Migration):
    dependencies = [("gateway", "0001_initial"), ("quotas", "0006_bounds_checks")]
    operations = [migrations.RunPython(ship, migrations.RunPython.noop)]
