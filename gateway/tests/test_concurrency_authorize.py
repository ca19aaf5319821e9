"""Concurrent authorizes with real threads: one request id is charged once, and a wallet never goes below zero."""

import threading

import pytest
from django.db import connection
from django.test import Client

from gateway.models import GatewayCharge
from wallets.models import Transfer
from wallets.tests.factories import ProjectFactory, scoped_key

from .helpers import authorize, metered_route, wallet_of

pytestmark = pytest.mark.django_db(transaction=True)


def _in_threads(count: int, call) -> list[int]:
    statuses: list[int] = []
    start = threading.Barrier(count)

    def run():
        try:
            start.wait()
            statuses.append(call().status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return statuses


def test_one_request_id_authorized_at_once_by_many_is_charged_once():
    acme = ProjectFactory(slug="acme", balance="10")
    key = scoped_key(acme)
    metered_route("/v1/")
    statuses = _in_threads(12, lambda: authorize(Client(), key, request_id="same"))
    assert statuses == [204] * 12
    assert GatewayCharge.objects.count() == 1
    assert Transfer.objects.filter(project=acme, kind=Transfer.Kind.USAGE).count() == 1
    assert wallet_of(acme)[0] == 9_000_000


def test_calls_beyond_the_balance_are_refused_and_available_never_goes_below_zero():
    acme = ProjectFactory(slug="acme", balance="5")
    key = scoped_key(acme)
    metered_route("/v1/")
    statuses = _in_threads(12, lambda: authorize(Client(), key))
    assert sorted(statuses) == [204] * 5 + [403] * 7
    assert wallet_of(acme) == (0, 0)
