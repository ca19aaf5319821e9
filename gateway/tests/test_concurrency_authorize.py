"""Concurrent authorizes with real threads: one request id is charged once, and a wallet never goes below zero."""

import threading

import pytest
from django.db import connection
from django.test import Client

from creditservice.lib.money import credits_to_micros
from creditservice.testing.invariants import assert_books_balance
from gateway.models import GatewayCharge
from wallets import services
from wallets.models import Grant, GrantDraw, Transfer
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


def test_parallel_calls_on_a_wallet_with_grants_draw_each_charge_once_and_keep_the_grants_bounds():
    # Each charge draws from the grants while it holds the wallet row: a draw that read the grants from
    # before the lock would take from a grant's old remaining (a 500 from its CHECK, or grants that no
    # longer sum to the balance).
    acme = ProjectFactory(slug="acme", balance="7")  # a granted grant of 7
    for n, credits in enumerate(("5", "6")):  # and two promotional ones, drawn first
        services.grant_create(project=acme, category="promotional", amount=credits_to_micros(credits),
                              reason="test", actor="system", idempotency_key=f"promo-{n}")
    key = scoped_key(acme)
    metered_route("/v1/", price=credits_to_micros("1"))
    statuses = _in_threads(24, lambda: authorize(Client(), key))  # room for 18
    assert sorted(statuses) == [204] * 18 + [403] * 6
    charges = Transfer.objects.filter(project=acme, kind=Transfer.Kind.USAGE)
    assert charges.count() == GatewayCharge.objects.count() == 18
    drawn = {t.id: sum(GrantDraw.objects.filter(transfer=t).values_list("amount", flat=True)) for t in charges}
    assert set(drawn.values()) == {credits_to_micros("1")}
    balance, _ = wallet_of(acme)
    assert sum(Grant.objects.filter(wallet__project=acme).values_list("remaining", flat=True)) == max(balance, 0) == 0
    assert_books_balance()
