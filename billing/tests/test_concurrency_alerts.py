"""Concurrent transactions crossing a threshold at once notify once (real threads, both backends)."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.core import mail
from django.db import connection

from billing.models import AlertNotification, ThresholdAlert, WebhookDelivery, WebhookEndpoint
from billing.services.alerts import alert_create, alerts_evaluate
from creditservice.lib.money import credits_to_micros
from wallets.services import wallet_debit
from wallets.tests.factories import ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db(transaction=True)
THREADS = 8


def _at_once(function):
    barrier = threading.Barrier(THREADS)

    def call(i):
        try:
            barrier.wait()
            return function(i)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=THREADS) as pool:
        return list(pool.map(call, range(THREADS)))


@pytest.fixture
def acme():
    project = ProjectFactory(slug="acme", balance="100", owner=UserFactory(email="olga@example.com"))
    WebhookEndpoint.objects.create(url="http://127.0.0.1:9/hook")
    alert_create(project=project, metric="available", level="critical", threshold=credits_to_micros("50"))
    return project


def test_eight_debits_crossing_at_once_notify_once(acme):
    # 100 → 20 in eight debits of 10 committed at once: each commit evaluates, one crossing.
    _at_once(lambda i: wallet_debit(project=acme, amount=credits_to_micros("10"), reason="t",
                                    idempotency_key=f"at-once-{i}", actor="system"))

    assert ThresholdAlert.objects.get().state == "fired"
    assert AlertNotification.objects.count() == 1
    assert WebhookDelivery.objects.filter(event_type="wallet.threshold").count() == 1
    assert [m.to for m in mail.outbox] == [["olga@example.com"]]


def test_eight_evaluations_of_one_crossing_notify_once(acme):
    wallet_debit(project=acme, amount=credits_to_micros("60"), reason="t", idempotency_key="below", actor="system")
    AlertNotification.objects.all().delete()
    ThresholdAlert.objects.update(state="armed")  # as if the hook had not run yet
    mail.outbox.clear()
    WebhookDelivery.objects.all().delete()

    written = _at_once(lambda i: len(alerts_evaluate(project_id=acme.id)))

    assert sum(written) == 1
    assert WebhookDelivery.objects.filter(event_type="wallet.threshold").count() == 1
    assert len(mail.outbox) == 1
