"""One Idempotency-Key, one effect, whatever the timing: abandoned claims, slow requests, expired keys.

These run on SQLite and on PostgreSQL, with real threads and a real crashed process.
"""

import os
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection

from creditservice.testing.fixtures import ServiceClient
from wallets import services
from wallets.models import IdempotencyRecord, Transfer
from wallets.selectors import ledger_check
from wallets.tests.factories import ProjectFactory, platform_key

pytestmark = pytest.mark.django_db(transaction=True)

CREDIT = "/api/v1/projects/acme/wallet/credit"
BODY = {"amount": "5", "reason": "once"}

# A request that claims its key and then dies (the process is killed) before its transaction commits.
_CRASHING_REQUEST = """
import os, sys
import django
django.setup()
from rest_framework.test import APIClient
from wallets import services

def crash(**kwargs):
    os._exit(3)  # inside the request's transaction, after the key was claimed

services.wallet_credit = crash
client = APIClient()
client.credentials(HTTP_AUTHORIZATION="Bearer " + os.environ["RAW_KEY"])
client.post(sys.argv[1], {"amount": "5", "reason": "once"}, format="json", HTTP_IDEMPOTENCY_KEY=sys.argv[2])
"""


def _database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def _crash_after_claiming(raw_key: str, key: str) -> None:
    env = {**os.environ, "DATABASE_URL": _database_url(), "RAW_KEY": raw_key,
           "DJANGO_SETTINGS_MODULE": "creditservice.settings", "CREDITSERVICE_TESTING": "1"}
    done = subprocess.run([sys.executable, "-c", _CRASHING_REQUEST, CREDIT, key], env=env, capture_output=True,
                          timeout=120, cwd=Path(django_settings.BASE_DIR))
    assert done.returncode == 3, done.stderr.decode()[-3000:]


def _balance(client: ServiceClient) -> str:
    return client.get("/api/v1/projects/acme/wallet").json()["balance"]


@pytest.fixture
def raw_key() -> str:
    ProjectFactory(slug="acme", balance="10")
    return platform_key()


def test_a_claim_abandoned_longer_than_the_lock_timeout_is_taken_over(raw_key, settings):
    _crash_after_claiming(raw_key, "crashed")
    assert IdempotencyRecord.objects.get(key="crashed").status == IdempotencyRecord.Status.IN_PROGRESS
    client = ServiceClient(raw_key)
    # Younger than the lock timeout, the claim may still be running: the retry must wait.
    assert client.post_idem(CREDIT, BODY, key="crashed").status_code == 409
    settings.IDEMPOTENCY_LOCK_TIMEOUT = timedelta(0)
    retry = client.post_idem(CREDIT, BODY, key="crashed")
    assert retry.status_code == 201, retry.json()
    again = client.post_idem(CREDIT, BODY, key="crashed")
    assert (again.status_code, again.json()) == (201, retry.json())
    assert _balance(client) == "15"
    assert Transfer.objects.filter(reason="once").count() == 1


def test_a_request_slower_than_the_lock_timeout_moves_credits_once(raw_key, settings, monkeypatch):
    """The first request is still running when its retry finds the claim stale and takes it over. Both
    attempts carry the same effect key, so the ledger's unique key lets one transfer through; the attempt
    that lost its claim rolls back and answers with the winner's answer."""
    settings.IDEMPOTENCY_LOCK_TIMEOUT = timedelta(0)
    reached, go = threading.Event(), threading.Event()
    credit = services.wallet_credit
    calls = []

    def slow_first(**kwargs):
        calls.append(kwargs["idempotency_key"])
        if len(calls) == 1:
            reached.set()
            assert go.wait(60)
        return credit(**kwargs)

    monkeypatch.setattr(services, "wallet_credit", slow_first)

    def post(_):
        try:
            return ServiceClient(raw_key).post_idem(CREDIT, BODY, key="slow")
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=2) as pool:
        first = pool.submit(post, 0)
        assert reached.wait(60)
        second = pool.submit(post, 1)
        if connection.vendor == "postgresql":
            # The retry takes the claim over and finishes while the first still runs.
            second.result(timeout=60)
        # On SQLite the first holds the database's write lock: the retry waits for it, then replays.
        go.set()
        answers = [first.result(timeout=60), second.result(timeout=60)]

    assert [a.status_code for a in answers] == [201, 201], [a.json() for a in answers]
    assert answers[0].json() == answers[1].json()
    assert len(set(calls)) == 1, "both attempts must carry the same effect key"
    assert Transfer.objects.filter(reason="once").count() == 1
    assert _balance(ServiceClient(raw_key)) == "15"
    assert ledger_check().ok


def test_a_key_reused_after_it_expired_is_a_new_effect(raw_key, settings):
    client = ServiceClient(raw_key)
    assert client.post_idem(CREDIT, BODY, key="old").status_code == 201
    settings.IDEMPOTENCY_KEY_TTL = timedelta(0)
    renewed = client.post_idem(CREDIT, BODY, key="old")
    assert renewed.status_code == 201 and "Idempotent-Replayed" not in renewed
    assert _balance(client) == "20"
    assert Transfer.objects.filter(reason="once").count() == 2
