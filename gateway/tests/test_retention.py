"""The hourly purge of gateway charge rows past GATEWAY_CHARGE_RETENTION (gateway/retention.py)."""

import logging
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from gateway import services
from gateway.models import GatewayCharge
from gateway.retention import gateway_charges_purge
from gateway.tasks import purge_charges
from wallets.models import Transfer
from wallets.selectors import ledger_check
from wallets.tests.factories import ProjectFactory, scoped_key

from .helpers import authorize, metered_route, wallet_of

pytestmark = pytest.mark.django_db

BASE_DIR = Path(__file__).resolve().parents[2]
HOUR = timedelta(hours=1)


@pytest.fixture(autouse=True)
def retention(settings):
    """Staff set a retention (the default keeps every row)."""
    settings.GATEWAY_CHARGE_RETENTION = timedelta(days=62)


@pytest.fixture
def acme():
    project = ProjectFactory(slug="acme", balance="100")
    metered_route("/v1/", price=1_000_000)
    return project


def charge(project, request_id: str, *, age: timedelta) -> None:
    """One call charged through the gateway's service, as if `age` ago."""
    services.gateway_authorize(project_id=project.id, request_id=request_id, method="GET", uri="/v1/chat",
                               actor="test", now=timezone.now() - age)


def usage_transfers(project) -> list[int]:
    return list(Transfer.objects.filter(project=project, kind=Transfer.Kind.USAGE).order_by("id")
                .values_list("id", flat=True))


def test_charges_past_the_retention_are_deleted_and_newer_ones_kept(acme):
    old_age = settings.GATEWAY_CHARGE_RETENTION + HOUR
    for n in range(3):
        charge(acme, f"old-{n}", age=old_age)
    for n in range(2):
        charge(acme, f"new-{n}", age=HOUR)
    transfers, wallet = usage_transfers(acme), wallet_of(acme)

    assert gateway_charges_purge() == 3

    assert sorted(GatewayCharge.objects.values_list("request_id", flat=True)) == ["new-0", "new-1"]
    assert usage_transfers(acme) == transfers and len(transfers) == 5
    assert wallet_of(acme) == wallet == (95_000_000, 0)
    assert ledger_check().ok
    assert gateway_charges_purge() == 0  # a second run finds nothing


def test_with_no_retention_set_every_charge_is_kept(acme, settings):
    settings.GATEWAY_CHARGE_RETENTION = None
    charge(acme, "years-old", age=timedelta(days=3650))

    assert gateway_charges_purge() == 0
    assert GatewayCharge.objects.filter(request_id="years-old").exists()


def test_a_call_replayed_inside_the_retention_is_still_not_charged(acme):
    client, key = Client(), scoped_key(acme)
    first = authorize(client, key, request_id="r1", HTTP_IDEMPOTENCY_KEY="client-retry")
    assert first.status_code == 204 and first["X-Credits-Charged"] == "1"
    authorize(client, key, request_id="r2")  # a newer charge, so the first is not the newest row

    # An hour before the first charge leaves the window: nothing of it goes.
    just_inside = timezone.now() + settings.GATEWAY_CHARGE_RETENTION - HOUR
    assert gateway_charges_purge(now=just_inside) == 0

    replay = authorize(client, key, request_id="r3", HTTP_IDEMPOTENCY_KEY="client-retry")
    assert replay.status_code == 204 and replay["X-Credits-Replayed"] == "true"
    assert wallet_of(acme)[0] == 98_000_000
    assert len(usage_transfers(acme)) == 2


def test_the_retention_is_never_below_the_idempotency_key_ttl():
    # A client's Idempotency-Key is the request id: its retries inside the TTL must find their claim.
    environment = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_URL")}
    environment.update(DEBUG="1", CREDITSERVICE_TESTING="0", IDEMPOTENCY_KEY_TTL_HOURS="48",
                       GATEWAY_CHARGE_RETENTION_DAYS="1", DATABASE_URL="sqlite:////nonexistent-dir/db.sqlite3")
    result = subprocess.run([sys.executable, "manage.py", "check"], cwd=BASE_DIR, env=environment,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert "creditservice: GATEWAY_CHARGE_RETENTION_DAYS must be at least IDEMPOTENCY_KEY_TTL_HOURS" in result.stderr


def test_the_purge_deletes_in_batches_until_the_window(acme):
    for n in range(5):
        charge(acme, f"old-{n}", age=settings.GATEWAY_CHARGE_RETENTION + HOUR)
    charge(acme, "new", age=HOUR)

    with CaptureQueriesContext(connection) as queries:
        assert gateway_charges_purge(batch_size=2) == 5

    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("DELETE")]
    assert len(deletes) == 3  # 2 + 2 + 1
    assert list(GatewayCharge.objects.values_list("request_id", flat=True)) == ["new"]
    assert ledger_check().ok


def test_one_run_stops_after_max_batches_and_the_next_goes_on(acme):
    for n in range(5):
        charge(acme, f"old-{n}", age=settings.GATEWAY_CHARGE_RETENTION + HOUR)
    charge(acme, "new", age=HOUR)
    assert gateway_charges_purge(batch_size=2, max_batches=1) == 2
    assert gateway_charges_purge(batch_size=2) == 3


def test_the_newest_charge_stays_so_a_charge_id_is_never_used_again(acme):
    # Its transfer's idempotency key is v1:gateway:{id}; an import moves the id sequence past the highest
    # id it loads, so the table is never emptied.
    for n in range(3):
        charge(acme, f"old-{n}", age=settings.GATEWAY_CHARGE_RETENTION + HOUR)
    newest = GatewayCharge.objects.latest("id").id
    assert gateway_charges_purge() == 2
    assert list(GatewayCharge.objects.values_list("id", flat=True)) == [newest]

    response = authorize(Client(), scoped_key(acme), request_id="after")
    assert response.status_code == 204 and response["X-Credits-Charged"] == "1"
    assert GatewayCharge.objects.latest("id").id > newest
    assert len(usage_transfers(acme)) == 4 and ledger_check().ok


def test_a_purge_that_deleted_rows_says_so_and_one_that_did_not_is_quiet(acme, caplog):
    with caplog.at_level(logging.INFO, logger="gateway.retention"):
        assert gateway_charges_purge() == 0
        assert not caplog.records
        charge(acme, "old", age=settings.GATEWAY_CHARGE_RETENTION + HOUR)
        charge(acme, "new", age=HOUR)
        assert gateway_charges_purge() == 1
    assert [r.getMessage().split(" created")[0] for r in caplog.records] == ["purged 1 gateway charge(s)"]


def test_the_task_purges(acme):
    charge(acme, "old", age=settings.GATEWAY_CHARGE_RETENTION + HOUR)
    charge(acme, "new", age=HOUR)
    assert purge_charges.apply().get() == 1


def test_the_purge_is_scheduled_hourly():
    task = PeriodicTask.objects.get(task="gateway.purge_charges")
    assert task.enabled and task.interval is not None
    assert (task.interval.every, task.interval.period) == (1, "hours")
