"""GET /api/v1/projects/{slug}/transactions: newest first, signed amounts, balance after, cursor pages."""

from datetime import timedelta

import time_machine
from django.utils import timezone

from wallets import services


def _statement(client, query=""):
    return client.get(f"/api/v1/projects/acme/transactions{query}").json()


def test_rows_are_newest_first_with_signed_amounts_and_balance_after(platform, project):
    services.wallet_debit(project=project, amount=2_500_000, reason="manual", idempotency_key="d1", actor="t")
    rows = _statement(platform)["results"]
    assert [(r["kind"], r["amount"], r["balance_after"]) for r in rows] == [
        ("debit", "-2.5", "97.5"),
        ("credit", "100", "100"),
    ]
    assert rows[0]["reason"] == "manual"


def test_cursor_pagination_walks_every_row_once(platform, project):
    for i in range(7):
        services.wallet_credit(project=project, amount=1_000_000, reason=f"c{i}", idempotency_key=f"c{i}", actor="t")
    seen, url = [], "/api/v1/projects/acme/transactions?page_size=3"
    while url:
        page = platform.get(url).json()
        seen += [r["id"] for r in page["results"]]
        url = page["next"]
    assert len(seen) == 8 and len(set(seen)) == 8
    assert seen == sorted(seen, reverse=True)


def test_filter_by_kind_and_time_range(platform, project):
    # The project's funding (a credit) is dated now, the debit three days later: a transfer is made at
    # its time, never re-dated (transfers are append-only).
    later = timezone.now() + timedelta(days=3)
    with time_machine.travel(later, tick=False):
        services.wallet_debit(project=project, amount=1_000_000, reason="d", idempotency_key="d", actor="t")
    assert [r["kind"] for r in _statement(platform, "?kind=debit")["results"]] == ["debit"]
    since = (later - timedelta(days=1)).isoformat().replace("+00:00", "Z")
    assert [r["kind"] for r in platform.get("/api/v1/projects/acme/transactions", {"since": since}).json()["results"]] == ["debit"]


def test_bad_filters_are_400(platform, project):
    for query in ("?kind=bogus", "?since=yesterday", "?page_size=0", "?colour=red"):
        response = platform.get(f"/api/v1/projects/acme/transactions{query}")
        assert response.status_code == 400, query
        assert response.json()["error"] == "validation_error"
