"""Usage quantities become integer micro-units and prices integer pico-credits (10^-12 credit):
SQLite kept the decimal columns as floats. Existing rows are converted (rounded to the 6 and 12
places they always had), and prices get the bound that keeps every rate inside 64 bits."""

from django.db import migrations, models

from creditservice.lib.money import MAX_RATE_PICOS
from creditservice.lib.schema_scaling import scale_columns

MICROS = 10**6
PICOS = 10**12


def _quantity() -> models.DecimalField:
    return models.DecimalField(max_digits=20, decimal_places=6)


class Migration(migrations.Migration):

    dependencies = [
        ("metering", "0004_collection_window_retry_at"),
    ]

    operations = [
        *scale_columns(
            model_name="price", table="metering_price",
            columns=[("unit_price", models.DecimalField(max_digits=30, decimal_places=12, help_text="Credits per `per`."),
                      models.BigIntegerField(help_text="Pico-credits (10^-12 credit) per `per`."), PICOS)],
            constraints=[models.CheckConstraint(condition=models.Q(("unit_price__gte", 0)), name="price_not_negative")],
        ),
        migrations.AddConstraint(
            model_name="price",
            constraint=models.CheckConstraint(
                condition=models.Q(models.Q(("per", "unit_second"), ("unit_price__lte", MAX_RATE_PICOS // 3600)),
                                   models.Q(models.Q(("per", "unit_second"), _negated=True),
                                            ("unit_price__lte", MAX_RATE_PICOS)), _connector="OR"),
                name="price_within_bound"),
        ),
        *scale_columns(
            model_name="usagerecord", table="metering_usagerecord",
            columns=[("quantity", _quantity(), models.BigIntegerField(), MICROS)],
            constraints=[models.CheckConstraint(condition=models.Q(("quantity__gte", 0)),
                                                name="usage_record_quantity_not_negative")],
        ),
        *scale_columns(
            model_name="usageevent", table="metering_usageevent",
            columns=[("quantity", _quantity(), models.BigIntegerField(), MICROS)],
            constraints=[models.CheckConstraint(condition=models.Q(("quantity__gte", 0)),
                                                name="usage_event_quantity_not_negative")],
        ),
    ]
