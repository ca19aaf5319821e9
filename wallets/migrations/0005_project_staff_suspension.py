"""A suspension by staff is its own state: it lasts until staff lift it (funding does not)."""

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("wallets", "0004_transfer_fewer_indexes"),
    ]

    operations = [
        migrations.AddField(
            model_name="project",
            name="suspended_by_staff",
            field=models.BooleanField(default=False),
        ),
        migrations.AddField(
            model_name="project",
            name="suspension_reason",
            field=models.CharField(blank=True, help_text="Why staff suspended it; shown to its members.", max_length=200),
        ),
        migrations.AlterModelOptions(
            name="project",
            options={"ordering": ["slug"],
                     "permissions": [("suspend_project", "Can suspend a project and lift its suspension")]},
        ),
        migrations.AddConstraint(
            model_name="project",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("suspended_by_staff", False), ("suspension_reason", "")),
                    models.Q(("status", "suspended"), ("suspended_by_staff", True),
                             models.Q(("suspension_reason", ""), _negated=True)),
                    _connector="OR",
                ),
                name="project_staff_suspension_shape",
            ),
        ),
    ]
