"""Commits of one wallet at the same moment draw from its grants once each.

Each commit takes its charge from the wallet's grants (wallets/ledger/grants.py) while it holds the
wallet row. A draw run after the lock was gone (a former single-statement commit in autocommit) let
two commits draw from the same grant's old remaining: a 500 from the grant's CHECK, after the charge
had moved.
"""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection

from creditservice.lib.money import credits_to_micros
from creditservice.testing.fixtures import ServiceClient
from creditservice.testing.invariants import assert_books_balance
from quotas.models import ResourceType
from quotas.tests.helpers import commit, reserve
from wallets import services
from wallets.models import Grant, GrantDraw, Transfer
from wallets.tests.factories import ProjectFactory, platform_key

pytestmark = pytest.mark.django_db(transaction=True)

COMMITS = 16


def test_parallel_commits_of_one_wallet_each_draw_once_from_its_grants():
    ResourceType.objects.get_or_create(code="vm", defaults={"display_name": "vm", "unit": "vm"})
    raw_key = platform_key()
    project = ProjectFactory(slug="acme", balance="7")  # a granted grant of 7
    for n, credits in enumerate(("5", "6")):  # and two promotional ones, drawn first
        services.grant_create(project=project, category="promotional", amount=credits_to_micros(credits),
                              reason="test", actor="system", idempotency_key=f"promo-{n}")
    client = ServiceClient(raw_key)
    held = [reserve(client, amount="1", key=f"r{n}").json()["id"] for n in range(COMMITS)]
    barrier = threading.Barrier(COMMITS, timeout=60)

    def commit_one(reservation_id):
        try:
            mine = ServiceClient(raw_key, raise_request_exception=False)
            barrier.wait()
            return commit(mine, reservation_id).status_code
        finally:
            connection.close()  # this thread's own connection

    with ThreadPoolExecutor(COMMITS) as pool:
        statuses = list(pool.map(commit_one, held))

    assert statuses == [200] * COMMITS
    charges = Transfer.objects.filter(kind=Transfer.Kind.RESERVATION)
    assert charges.count() == COMMITS
    drawn = {t.id: sum(GrantDraw.objects.filter(transfer=t).values_list("amount", flat=True)) for t in charges}
    assert set(drawn.values()) == {credits_to_micros("1")}  # each commit drew its whole charge, once
    assert sum(Grant.objects.values_list("remaining", flat=True)) == credits_to_micros("2")  # 18 - 16
    # The promotional grants are drawn first, to the last micro-credit.
    assert set(Grant.objects.filter(category="promotional").values_list("remaining", flat=True)) == {0}
    assert_books_balance()
