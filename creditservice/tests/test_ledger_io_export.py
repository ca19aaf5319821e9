"""export_ledger reads one snapshot: a write that lands while it runs is wholly in the file or wholly out."""

import io
import json
import threading

import pytest
from django.db import connection

from creditservice.ledger_io import export
from creditservice.lib.money import credits_to_micros
from wallets import services
from wallets.tests.factories import ProjectFactory


def credit_from_another_connection(project, key: str) -> None:
    def work():
        try:
            services.wallet_credit(project=project, amount=credits_to_micros("5"), reason="during the export",
                                   idempotency_key=key, actor="system")
        finally:
            connection.close()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()


@pytest.mark.django_db(transaction=True)
def test_a_credit_made_while_the_export_runs_is_not_half_in_it(monkeypatch):
    project = ProjectFactory(balance="10")
    monkeypatch.setattr(export, "CHUNK_ROWS", 1)  # report after every row: the credit lands mid-export
    credited = []

    def progress(done: int, total: int) -> None:
        if not credited:
            credited.append(True)
            credit_from_another_connection(project, "v1:test:during-export")

    out = io.StringIO()
    header = export.ledger_export(out=out, progress=progress)
    rows = [json.loads(line) for line in out.getvalue().splitlines()[1:]]
    transfers = [r["row"] for r in rows if r["table"] == "wallets_transfer"]
    wallet = next(r["row"] for r in rows if r["table"] == "wallets_account" and r["row"]["project_id"] == project.id)

    assert credited
    assert [t["idempotency_key"] for t in transfers if t["idempotency_key"] == "v1:test:during-export"] == []
    assert wallet["balance"] == sum(t["amount"] for t in transfers if t["credit_account_id"] == wallet["id"]) \
        - sum(t["amount"] for t in transfers if t["debit_account_id"] == wallet["id"])
    assert header["total_rows"] == len(rows)
    project.wallet.refresh_from_db()
    assert project.wallet.balance == credits_to_micros("15")  # the credit itself went through


@pytest.mark.django_db
def test_money_is_written_as_integers_and_times_with_their_offset():
    project = ProjectFactory(balance="1.5")
    out = io.StringIO()
    export.ledger_export(out=out)
    rows = [json.loads(line) for line in out.getvalue().splitlines()[1:]]
    transfer = next(r["row"] for r in rows if r["table"] == "wallets_transfer" and r["row"]["project_id"] == project.id)
    assert transfer["amount"] == 1_500_000 and isinstance(transfer["amount"], int)
    assert transfer["created_at"].endswith("+00:00")
