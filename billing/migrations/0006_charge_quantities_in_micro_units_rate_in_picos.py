"""Charge quantities become integer micro-units and the rate integer pico-credits per billing unit:
SQLite kept the decimal columns as floats. Existing rows are converted: quantities had 6 places;
rates (18 places) are rounded half up to 12, which only moves rates of windows that spanned a price
change (a single price's rate has at most 12 places)."""

from django.db import migrations, models

from creditservice.lib.schema_scaling import scale_columns

MICROS = 10**6
PICOS = 10**12


def _quantity(**kwargs) -> models.DecimalField:
    return models.DecimalField(max_digits=20, decimal_places=6, **kwargs)


class Migration(migrations.Migration):

    dependencies = [
        ("billing", "0005_charge_leaner_writes_chunk_worker"),
        ("metering", "0005_quantities_in_micro_units_prices_in_picos"),
    ]

    operations = scale_columns(
        model_name="charge", table="billing_charge",
        columns=[
            ("quantity", _quantity(), models.BigIntegerField(), MICROS),
            ("window_quantity", _quantity(), models.BigIntegerField(), MICROS),
            ("previously_charged_quantity", _quantity(default=0), models.BigIntegerField(default=0), MICROS),
            ("rate", models.DecimalField(max_digits=40, decimal_places=18), models.BigIntegerField(), PICOS),
        ],
        constraints=[models.CheckConstraint(
            condition=models.Q(models.Q(("amount__lte", 0), ("kind", "reversal"), ("quantity__lt", 0)),
                               models.Q(models.Q(("kind", "reversal"), _negated=True), ("amount__gte", 0),
                                        ("quantity__gt", 0)), _connector="OR"),
            name="charge_sign_follows_kind")],
    )
