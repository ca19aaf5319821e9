"""wallets.ledger.transfer_many, the set-based path of the billing batch."""

import json

import pytest

from wallets import ledger
from wallets.models import Account, Transfer
from wallets.selectors import ledger_check
from wallets.tests.factories import ProjectFactory

pytestmark = pytest.mark.django_db


def _out(transfers):
    return ledger.transfer_many(transfers=transfers, direction="out", system_code="revenue", kind=Transfer.Kind.USAGE,
                                reason="usage charge")


def test_it_moves_each_amount_once_and_keeps_the_ledger_balanced():
    acme, beta = ProjectFactory(slug="acme", balance="1"), ProjectFactory(slug="beta", balance="1")
    batch = [ledger.BulkTransfer(project_id=acme.id, amount=300_000, idempotency_key="k1", metadata_json=json.dumps({"a": 1})),
             ledger.BulkTransfer(project_id=acme.id, amount=900_000, idempotency_key="k2"),
             ledger.BulkTransfer(project_id=beta.id, amount=100_000, idempotency_key="k3")]
    ids = _out(batch)
    again = _out(batch)

    assert ids == again and set(ids) == {"k1", "k2", "k3"}
    assert Account.objects.get(project=acme).balance == -200_000  # usage may overdraw
    assert Account.objects.get(project=beta).balance == 900_000
    assert list(Transfer.objects.filter(idempotency_key__in=["k1", "k2"]).order_by("id").values_list("wallet_balance_after", flat=True)) == [700_000, -200_000]
    assert Transfer.objects.get(idempotency_key="k1").metadata == {"a": 1}
    assert ledger_check().ok


def test_a_batch_with_a_key_already_used_moves_only_the_new_ones():
    acme = ProjectFactory(slug="acme", balance="1")
    _out([ledger.BulkTransfer(project_id=acme.id, amount=100_000, idempotency_key="k1")])
    _out([ledger.BulkTransfer(project_id=acme.id, amount=100_000, idempotency_key="k1"),
          ledger.BulkTransfer(project_id=acme.id, amount=200_000, idempotency_key="k2")])
    assert Account.objects.get(project=acme).balance == 700_000
    assert ledger_check().ok


def test_repeated_keys_or_non_positive_amounts_are_refused():
    acme = ProjectFactory(slug="acme", balance="1")
    with pytest.raises(ValueError):
        _out([ledger.BulkTransfer(project_id=acme.id, amount=1, idempotency_key="k")] * 2)
    with pytest.raises(ValueError):
        _out([ledger.BulkTransfer(project_id=acme.id, amount=0, idempotency_key="z")])
    assert Account.objects.get(project=acme).balance == 1_000_000
