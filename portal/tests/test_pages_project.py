"""The project page: money, status banners, the statement, the spend chart, quotas and budget."""

import re
from contextlib import nullcontext
from datetime import UTC, date, datetime, timedelta

import pytest
import time_machine
from django.utils import timezone

from creditservice.lib.money import credits_to_micros
from portal import selectors
from portal.charts import spend_chart
from wallets import ledger
from wallets.models import Account, Project, Transfer
from wallets.tests.factories import fund

pytestmark = pytest.mark.django_db


def page(browser, path="/portal/acme/") -> str:
    response = browser.get(path)
    assert response.status_code == 200
    return response.content.decode()


def spend(project, credits: str, key: str, at: datetime | None = None) -> Transfer:
    # created_at is auto_now_add and a transfer is never updated (append-only): a test dates its
    # history by making each transfer at its time.
    with time_machine.travel(at, tick=False) if at is not None else nullcontext():
        record, _ = ledger.transfer(project=project, direction="out", system_code=Account.System.REVENUE,
                                    amount=credits_to_micros(credits), kind=Transfer.Kind.USAGE,
                                    idempotency_key=key, reason=f"usage {key}")
    return record


def test_it_shows_balance_reserved_and_available(browser, project):
    ledger.hold(wallet_id=project.wallet.id, amount=credits_to_micros("30.5"))
    html = page(browser)
    assert re.search(r'data-testid="balance">100<', html)
    assert re.search(r"<dt>Reserved</dt><dd[^>]*>30.5<", html)
    assert re.search(r'data-testid="available">69.5<', html)


def test_large_amounts_are_grouped_and_exact(browser, project):
    fund(project, "1234567.000001")
    assert 'data-testid="balance">1,234,667.000001<' in page(browser)


def test_an_active_project_has_no_banner(browser, project):
    assert "banner" not in page(browser).split("<main", 1)[1].split("Transactions", 1)[0].replace("banner-title", "")


def test_a_project_in_grace_says_so_with_its_deadline(browser, project):
    Project.objects.filter(id=project.id).update(status=Project.Status.GRACE,
                                                 grace_until=datetime(2026, 12, 3, 14, 30, tzinfo=UTC))
    html = page(browser)
    assert "in its grace period" in html
    assert "3 Dec 2026, 14:30 UTC" in html
    assert 'datetime="2026-12-03T14:30:00+00:00"' in html
    assert 'role="alert"' in html


def test_a_suspended_project_says_so(browser, project):
    Project.objects.filter(id=project.id).update(status=Project.Status.SUSPENDED)
    html = page(browser)
    assert "This project is suspended" in html
    assert "grace period" in html  # explains why, without the grace banner's heading
    assert "in its grace period" not in html


def test_the_statement_shows_kind_reason_signed_amount_and_balance_after(browser, project):
    spend(project, "12.5", "u1")
    html = page(browser)
    rows = re.findall(r"<tr>\s*<td><time.*?</tr>", html, re.S)
    assert len(rows) == 2
    newest, funding = rows
    assert "Usage" in newest and "usage u1" in newest
    assert "\u221212.5" in newest and ">87.5</td>" in newest
    assert "+100" in funding and "test funding" in funding


def test_the_statement_is_paginated_newest_first(browser, project):
    for n in range(25):
        spend(project, "1", f"u{n}")
    first = page(browser)
    assert "Page 1 of 2" in first
    assert "usage u24" in first and "usage u5" in first and "usage u4" not in first
    assert 'href="?page=2#transactions"' in first
    second = page(browser, "/portal/acme/?page=2")
    assert "usage u4" in second and "usage u0" in second and "test funding" in second
    assert "usage u5" not in second
    # A page beyond the end shows the last page instead of failing.
    assert "Page 2 of 2" in page(browser, "/portal/acme/?page=99")


def bars(html: str) -> dict[str, str]:
    return dict(re.findall(r'data-day="([\d-]+)" data-spend="([\d.]+)"', html))


def test_the_chart_has_a_bar_per_day_with_that_days_spend(browser, project):
    today = timezone.now().astimezone(UTC).date()
    noon = datetime.combine(today, datetime.min.time(), tzinfo=UTC) + timedelta(hours=12)
    spend(project, "3", "a", noon - timedelta(days=2))
    spend(project, "1.25", "b", noon - timedelta(days=2, hours=3))
    spend(project, "7", "c", noon)
    spend(project, "50", "too-old", noon - timedelta(days=30))
    html = page(browser)
    assert '<svg viewBox="0 0 480 200" role="img"' in html
    days = bars(html)
    assert len(days) == 30
    assert days[str(today)] == "7"
    assert days[str(today - timedelta(days=2))] == "4.25"
    assert days[str(today - timedelta(days=1))] == "0"
    assert str(today - timedelta(days=30)) not in days
    assert "11.25 credits spent" in html  # the text alternative


def test_credits_coming_in_are_not_spend(browser, project):
    fund(project, "40")
    assert set(bars(page(browser)).values()) == {"0"}


def test_a_bar_is_as_tall_as_its_share_of_the_axis(db):
    first = date(2026, 11, 1)
    days = [selectors.DailySpend(day=first + timedelta(days=i), amount=0) for i in range(30)]
    days[3] = selectors.DailySpend(day=days[3].day, amount=credits_to_micros("10"))
    days[4] = selectors.DailySpend(day=days[4].day, amount=credits_to_micros("5"))
    chart = spend_chart(days)
    assert chart.bars[3].height == pytest.approx(2 * chart.bars[4].height)
    assert chart.bars[0].height == 0
    assert [tick.label for tick in chart.ticks] == ["0", "5", "10"]
    assert chart.peak.day == date(2026, 11, 4)


def test_the_chart_days_follow_utc(project):
    today = date(2026, 11, 22)
    spend(project, "2", "late", datetime(2026, 11, 21, 23, 59, 59, tzinfo=UTC))
    spend(project, "3", "early", datetime(2026, 11, 22, 0, 0, 0, tzinfo=UTC))
    result = {d.day: d.amount for d in selectors.daily_spend(project, today=today)}
    assert result[date(2026, 11, 21)] == credits_to_micros("2")
    assert result[date(2026, 11, 22)] == credits_to_micros("3")
