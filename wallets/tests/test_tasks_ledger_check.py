"""The nightly ledger check (beat task wallets.check_ledger) and `manage.py check_ledger` store their
result as a LedgerCheck, shown read-only in the admin; a corrupted row is found and named."""

import logging
import threading

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django_celery_beat.models import PeriodicTask

from creditservice.lib.money import credits_to_micros
from wallets import ledger, services, tasks
from wallets.models import Account, LedgerCheck, Transfer
from wallets.selectors import ledger_check
from wallets.tests.factories import ProjectFactory

pytestmark = pytest.mark.django_db


def _corrupt_balance(project, delta: int) -> None:
    """A raw UPDATE past the ledger: allowed by the database (only transfers are append-only)."""
    with connection.cursor() as cursor:
        cursor.execute("UPDATE wallets_account SET balance = balance + %s WHERE project_id = %s", [delta, project.id])


def test_the_nightly_check_records_balanced_books_as_ok(project):
    result = tasks.check_ledger.delay().get()
    row = LedgerCheck.objects.get()
    assert result == {"ledger_check": row.id, "ok": True, "drifts": 0}
    assert (row.source, row.ok, row.drift_count, row.drifts) == ("nightly", True, 0, [])
    assert row.wallets_checked == 1 and row.started_at <= row.finished_at


def test_the_nightly_check_records_a_corrupted_wallet_by_name(caplog):
    ProjectFactory(slug="acme", balance="10")
    corrupted = ProjectFactory(slug="globex", balance="10")
    _corrupt_balance(corrupted, 1)
    with caplog.at_level(logging.ERROR, logger="wallets.tasks"):
        result = tasks.check_ledger.delay().get()
    row = LedgerCheck.objects.get()
    assert result["ok"] is False and not row.ok and row.drift_count == len(row.drifts) >= 1
    assert f"wallet of project 'globex' (account {corrupted.wallet.id}): cached balance 10000001 != 10000000" in row.drifts[0]
    assert not any("'acme'" in drift for drift in row.drifts)
    assert "globex" in caplog.text


def test_a_hold_or_debit_that_overdrew_a_wallet_is_named_but_a_usage_charge_is_not():
    charged, overdrawn = ProjectFactory(slug="charged", balance="1"), ProjectFactory(slug="overdrawn", balance="1")
    # Usage already happened: a charge may take available below zero.
    ledger.transfer(project=charged, direction="out", system_code=Account.System.REVENUE, amount=credits_to_micros("3"),
                    kind=Transfer.Kind.USAGE, idempotency_key="usage-1")
    # reserved above the balance without a charge to explain it: only a hold past available does that.
    with connection.cursor() as cursor:
        cursor.execute("UPDATE wallets_account SET reserved = %s WHERE project_id = %s", [credits_to_micros("2"), overdrawn.id])
    drifts = ledger_check().drifts
    assert [d for d in drifts if "overdrew" in d] == [
        f"wallet of project 'overdrawn' (account {overdrawn.wallet.id}): available -1000000 is below zero by more than "
        "its usage charges and refunds took (0) (micro-credits): a hold or a debit overdrew it"]


def test_check_ledger_records_its_run_unless_told_not_to(project, capsys):
    call_command("check_ledger")
    assert LedgerCheck.objects.get().source == "command"
    call_command("check_ledger", "--no-record")
    assert LedgerCheck.objects.count() == 1
    _corrupt_balance(project, -5)
    with pytest.raises(CommandError, match="1 drift"):
        call_command("check_ledger")
    assert "DRIFT: wallet of project 'acme'" in capsys.readouterr().err
    assert LedgerCheck.objects.filter(ok=False).count() == 1


def test_a_recorded_check_keeps_a_bounded_report(db, monkeypatch):
    monkeypatch.setattr(LedgerCheck, "DRIFTS_KEPT", 3)
    monkeypatch.setattr(LedgerCheck, "DRIFT_CHARS", 40)
    for n in range(5):
        _corrupt_balance(ProjectFactory(slug=f"p{n}", balance="1"), 1)
    _, row = services.ledger_check_run(source=LedgerCheck.Source.COMMAND)
    assert row.drift_count == 5 and len(row.drifts) == 3 and all(len(drift) <= 40 for drift in row.drifts)


def test_the_nightly_check_is_scheduled(db):
    task = PeriodicTask.objects.get(task="wallets.check_ledger")
    assert task.enabled and task.crontab is not None
    assert (task.crontab.minute, task.crontab.hour, str(task.crontab.timezone)) == ("40", "3", "UTC")


def test_staff_see_checks_newest_first_filtered_by_outcome_and_cannot_change_them(admin_client, project):
    call_command("check_ledger")
    _corrupt_balance(project, 1)
    with pytest.raises(CommandError):
        call_command("check_ledger")
    failed = LedgerCheck.objects.get(ok=False)
    page = admin_client.get("/admin/wallets/ledgercheck/").content.decode()
    assert page.index(f"/admin/wallets/ledgercheck/{failed.id}/change/") < page.index(
        f"/admin/wallets/ledgercheck/{LedgerCheck.objects.get(ok=True).id}/change/")
    assert "/admin/wallets/ledgercheck/add/" not in page
    only_failed = admin_client.get("/admin/wallets/ledgercheck/?ok__exact=0").content.decode()
    assert f"/{failed.id}/change/" in only_failed and f"/{LedgerCheck.objects.get(ok=True).id}/change/" not in only_failed
    detail = admin_client.get(f"/admin/wallets/ledgercheck/{failed.id}/change/").content.decode()
    assert "wallet of project &#x27;acme&#x27;" in detail
    assert admin_client.post(f"/admin/wallets/ledgercheck/{failed.id}/delete/", {"post": "yes"}).status_code == 403
    assert LedgerCheck.objects.count() == 2


@pytest.mark.django_db(transaction=True)
def test_a_transfer_committed_while_the_check_reads_is_no_drift():
    """The check reads the transfers' sums, then the wallets: a transfer committed in between (by
    another connection) must not show as a drift. One read snapshot: REPEATABLE READ on PostgreSQL,
    a deferred read transaction on SQLite."""
    project = ProjectFactory(slug="acme", balance="10")
    credited = []

    def credit_elsewhere():
        try:
            services.wallet_credit(project=project, amount=1_000_000, reason="meanwhile", idempotency_key="meanwhile",
                                   actor="test")
            credited.append(True)
        finally:
            connection.close()

    def after_the_sums(execute, sql, params, many, context):
        result = execute(sql, params, many, context)
        if not credited and "SUM(" in sql.upper():
            writer = threading.Thread(target=credit_elsewhere)
            writer.start()
            writer.join(timeout=30)
        return result

    with connection.execute_wrapper(after_the_sums):
        report = ledger_check()
    assert credited, "the concurrent credit did not commit"
    assert report.ok, report.drifts
    assert Account.objects.get(project=project).balance == 11_000_000
    assert ledger_check().ok
