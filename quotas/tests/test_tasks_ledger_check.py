"""The nightly ledger check records a quota whose reserved disagrees with its pending holds, by name."""

from django.db import connection

from quotas.models import Quota
from quotas.tests.helpers import reserve, units
from wallets import tasks
from wallets.models import LedgerCheck


def test_the_nightly_check_records_a_corrupted_quota_by_name(platform, project):
    reserve(platform, resource_type="vcpu", quantity="2", amount="5")
    assert tasks.check_ledger.delay().get()["ok"] is True
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {Quota._meta.db_table} SET reserved = %s WHERE project_id = %s", [units("3"), project.id])
    assert tasks.check_ledger.delay().get()["ok"] is False
    failed = LedgerCheck.objects.get(ok=False)
    assert failed.source == "nightly"
    assert failed.drifts == ["quota vcpu of project 'acme': reserved 3 != 2 held by its pending reservations"]
