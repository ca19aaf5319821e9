"""Quantities become integer micro-units (1 unit = 1,000,000): SQLite kept the decimal columns as
floats, so 0.3 + 0.6 - 0.3 left 0.6000000000000001 behind and a hold could no longer be released.
Existing rows are converted (rounded to the 6 places they always had)."""

from django.db import migrations, models

from creditservice.lib.schema_scaling import scale_columns

MICROS = 10**6


def _decimal(**kwargs) -> models.DecimalField:
    return models.DecimalField(max_digits=20, decimal_places=6, **kwargs)


class Migration(migrations.Migration):

    dependencies = [
        ("quotas", "0004_expiry_schedule"),
    ]

    operations = [
        *scale_columns(
            model_name="quota", table="quotas_quota",
            columns=[
                ("limit", _decimal(blank=True, null=True, help_text="Empty: no limit (usage is still tracked)."),
                 models.BigIntegerField(blank=True, null=True, help_text="Empty: no limit (usage is still tracked)."),
                 MICROS),
                ("used", _decimal(default=0), models.BigIntegerField(default=0), MICROS),
                ("reserved", _decimal(default=0), models.BigIntegerField(default=0), MICROS),
            ],
            constraints=[
                models.CheckConstraint(condition=models.Q(("used__gte", 0)), name="quota_used_not_negative"),
                models.CheckConstraint(condition=models.Q(("reserved__gte", 0)), name="quota_reserved_not_negative"),
                models.CheckConstraint(condition=models.Q(("limit__gte", 0), ("limit__isnull", True), _connector="OR"),
                                       name="quota_limit_not_negative"),
            ],
        ),
        *scale_columns(
            model_name="quotadefault", table="quotas_quotadefault",
            columns=[("limit", _decimal(), models.BigIntegerField(), MICROS)],
            constraints=[models.CheckConstraint(condition=models.Q(("limit__gte", 0)),
                                                name="quota_default_limit_not_negative")],
        ),
        *scale_columns(
            model_name="reservation", table="quotas_reservation",
            columns=[("quantity", _decimal(), models.BigIntegerField(), MICROS)],
            constraints=[models.CheckConstraint(condition=models.Q(("quantity__gt", 0)),
                                                name="reservation_quantity_positive")],
        ),
    ]
