"""The portal's statements page: a month picker, the statement's table and its CSV."""

from datetime import UTC, datetime

import pytest
import time_machine

from wallets.tests.factories import ProjectFactory, fund

pytestmark = pytest.mark.django_db


def test_the_statement_page_shows_the_month_and_links_its_csv(browser, project):
    month = datetime.now(UTC).strftime("%Y-%m")
    response = browser.get("/portal/acme/statements")
    assert response.status_code == 200
    html = response.content.decode()
    assert f'value="{month}"' in html and 'type="month"' in html
    assert "Opening balance" in html and "Closing balance (to date)" in html
    assert "+100" in html or "100" in html
    assert f'href="?month={month}&amp;format=csv"' in html
    csv = browser.get(f"/portal/acme/statements?month={month}&format=csv")
    assert csv["Content-Type"].startswith("text/csv")
    assert csv["Content-Disposition"] == f'attachment; filename="statement-acme-{month}.csv"'
    lines = csv.content.decode().splitlines()
    assert lines[0] == "kind,resource_type,description,amount,count"
    assert lines[-1].startswith("closing_balance,") and ",100," in lines[-1]
    assert "/portal/acme/statements" in browser.get("/portal/acme/").content.decode()


def test_a_month_that_has_no_statement_is_refused_on_the_page(browser, project):
    for month in ("2999-01", "nonsense", "1999-12"):
        response = browser.get(f"/portal/acme/statements?month={month}")
        assert response.status_code == 400
        assert 'role="alert"' in response.content.decode()


def test_a_member_cannot_see_another_projects_statement(browser):
    with time_machine.travel(datetime(2026, 1, 1, tzinfo=UTC), tick=True):
        other = ProjectFactory(slug="other")
        fund(other, "5")
    assert browser.get("/portal/other/statements").status_code == 404
