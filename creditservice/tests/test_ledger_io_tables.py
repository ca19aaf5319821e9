"""Every model is classified for the ledger export: a model added later fails here until it is listed."""

import pytest
from django.db import models
from django.test.utils import isolate_apps

from creditservice.ledger_io import tables
from creditservice.ledger_io.encoding import Unencodable, check_encodable


def test_every_model_is_exported_or_excluded_with_a_reason():
    assert tables.unclassified() == []
    tables.validate()
    assert all(reason.strip() for reason in (*tables.EXCLUDED_MODELS.values(), *tables.EXCLUDED_APPS.values()))


def test_no_domain_app_is_excluded_whole():
    assert not set(tables.EXCLUDED_APPS) & set(tables.DOMAIN_APPS)


@isolate_apps("wallets")
def test_a_new_domain_model_fails_the_check_until_it_is_classified(monkeypatch):
    class Voucher(models.Model):
        code = models.CharField(max_length=20)

        class Meta:
            app_label = "wallets"

    monkeypatch.setattr(tables, "all_models", lambda: [*tables.apps.get_models(include_auto_created=True), Voucher])
    assert tables.unclassified() == ["wallets.Voucher"]
    with pytest.raises(tables.Classification, match="wallets.Voucher"):
        tables.validate()


def test_tables_come_after_every_table_they_refer_to():
    seen: set[str] = set()
    for model in tables.included_models():
        refers_to = {label for label in tables.dependencies(model) if label in tables.INCLUDED}
        assert refers_to - {model._meta.label} <= seen, model._meta.label
        seen.add(model._meta.label)
    assert tables.included_models().index(tables.apps.get_model("wallets.Transfer")) > \
        tables.included_models().index(tables.apps.get_model("wallets.Account"))


def test_every_exported_column_has_an_exact_encoding():
    for model in tables.included_models():
        for field in model._meta.concrete_fields:
            check_encodable(field)


@isolate_apps("wallets")
def test_a_float_or_decimal_column_is_refused_not_rounded():
    class Rate(models.Model):
        ratio = models.FloatField()
        price = models.DecimalField(max_digits=10, decimal_places=2)

        class Meta:
            app_label = "wallets"

    for name in ("ratio", "price"):
        with pytest.raises(Unencodable, match=name):
            check_encodable(Rate._meta.get_field(name))
