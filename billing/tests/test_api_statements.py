"""GET /projects/{slug}/statements/{YYYY-MM}: a month of a project's wallet that adds up to the ledger."""

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from rest_framework.test import APIClient

from creditservice.lib.money import credits_to_micros, format_amount
from creditservice.testing.fixtures import ServiceClient
from gateway.selectors import clear_route_cache
from gateway.services import gateway_authorize
from gateway.tests.helpers import metered_route
from quotas.selectors import clear_caches
from wallets import ledger
from wallets.models import Account, Project, Transfer
from wallets.services import wallet_credit, wallet_debit
from wallets.tests.factories import ProjectFactory, UserFactory, member, platform_key, scoped_key

from .factories import bill, usage

pytestmark = pytest.mark.django_db

HOUR = timedelta(hours=1)
OCTOBER = datetime(2026, 10, 5, 9, 0, tzinfo=UTC)
OCT_WINDOW = datetime(2026, 10, 10, 4, 0, tzinfo=UTC)
NOV_WINDOW = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)
NOW = datetime(2026, 11, 22, 5, 30, tzinfo=UTC)
OCT = "/api/v1/projects/acme/statements/2026-10"
NOV = "/api/v1/projects/acme/statements/2026-11"


def balance_at(project: Project, moment: datetime) -> int:
    """The wallet's balance at `moment`, summed from its transfers here, independently of the statement."""
    wallet_id = Account.objects.get(project=project).id
    return sum(t.signed_amount_for(wallet_id) for t in Transfer.objects.filter(project=project, created_at__lt=moment))


def move(project: Project, direction: str, system_code: str, credits: str, kind: str, key: str, reference: str = ""):
    ledger.transfer(project=project, direction=direction, system_code=system_code, amount=credits_to_micros(credits),
                    kind=kind, idempotency_key=key, reference=reference)


def reserve_and_commit(platform: ServiceClient, code: str, amount: str, committed: str) -> None:
    created = platform.post_idem("/api/v1/reservations",
                                 {"project": "acme", "resource_type": code, "quantity": "1", "amount": amount})
    assert created.status_code == 201, created.json()
    done = platform.post_idem(f"/api/v1/reservations/{created.json()['id']}/commit", {"amount": committed})
    assert done.status_code == 200, done.json()


@pytest.fixture
def platform(db) -> ServiceClient:
    clear_caches()
    yield ServiceClient(platform_key())
    clear_caches()


@pytest.fixture
def two_months(platform):
    """acme with every kind of movement in October 2026, and some in November (to date, at NOW)."""
    with time_machine.travel(OCTOBER, tick=True) as clock:
        acme = ProjectFactory(slug="acme")
        move(acme, "in", Account.System.STRIPE, "100", Transfer.Kind.TOP_UP, "t-topup", "checkout:cs_1")
        move(acme, "in", Account.System.PROMOTIONS, "10", Transfer.Kind.PROMOTION, "t-promo")
        wallet_credit(project=acme, amount=credits_to_micros("5"), reason="goodwill", idempotency_key="t-credit",
                      actor="user:1")
        wallet_debit(project=acme, amount=credits_to_micros("2"), reason="fee", idempotency_key="t-debit", actor="user:1")
        reserve_and_commit(platform, "vm", "3", "1.5")
        reserve_and_commit(platform, "storage_gib", "1", "1")
        metered_route(price=500_000)
        clear_route_cache()
        for request in ("r1", "r2"):
            gateway_authorize(project_id=acme.id, request_id=request, method="GET", uri="/v1/chat", actor="test")
        clock.move_to(OCT_WINDOW + HOUR + timedelta(minutes=30))
        usage(acme, "vm", OCT_WINDOW, "2.5")
        usage(acme, "storage_gib", OCT_WINDOW, "10")
        bill(OCT_WINDOW)
        clock.move_to(OCT_WINDOW + 2 * HOUR + timedelta(minutes=30))
        usage(acme, "vm", OCT_WINDOW, "2")  # re-collected lower after it was billed: a credit-back
        bill(OCT_WINDOW + HOUR)
        move(acme, "out", Account.System.STRIPE, "3", Transfer.Kind.REFUND, "t-refund", "checkout:cs_1")
        # A grant's expiry (to the grants' `expired` account) and a kind this statement does not know.
        move(acme, "out", "expired", "1", Transfer.Kind.DEBIT, "t-expiry")
        move(acme, "in", Account.System.ADJUSTMENTS, "0.25", "mystery", "t-mystery")
        clock.move_to(datetime(2026, 10, 31, 23, 59, 59, tzinfo=UTC))
        move(acme, "in", Account.System.STRIPE, "1", Transfer.Kind.TOP_UP, "t-last-second")
        clock.move_to(datetime(2026, 11, 1, 0, 0, tzinfo=UTC))
        move(acme, "in", Account.System.STRIPE, "2", Transfer.Kind.TOP_UP, "t-first-second")
        clock.move_to(NOW)
        usage(acme, "vm", NOV_WINDOW, "1")
        bill(NOV_WINDOW)
    with time_machine.travel(NOW, tick=False):
        yield acme


def _lines(body: dict) -> dict[tuple[str, str | None], tuple[str, int]]:
    return {(line["kind"], line["resource_type"]): (line["amount"], line["count"]) for line in body["lines"]}


def _adds_up(body: dict) -> bool:
    return Decimal(body["opening_balance"]) + sum(Decimal(line["amount"]) for line in body["lines"]) == \
        Decimal(body["closing_balance"])


def test_a_month_with_every_kind_of_movement_adds_up_to_the_ledger(two_months, platform):
    response = platform.get(OCT)
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["project"], body["month"], body["to_date"]) == ("acme", "2026-10", False)
    assert (body["period_start"], body["period_end"]) == ("2026-10-01T00:00:00Z", "2026-11-01T00:00:00Z")
    assert body["opening_balance"] == "0"
    assert body["closing_balance"] == format_amount(balance_at(two_months, datetime(2026, 11, 1, tzinfo=UTC)))
    assert _adds_up(body)
    assert _lines(body) == {
        ("top_up", None): ("101", 2),
        ("grant", None): ("10", 1),
        ("staff_credit", None): ("5", 1),
        ("staff_debit", None): ("-2", 1),
        ("usage", "storage_gib"): (_lines(body)[("usage", "storage_gib")][0], 1),
        ("usage", "vm"): ("-0.1", 1),
        ("credit_back", "vm"): ("0.02", 1),
        ("reservation_commit", "storage_gib"): ("-1", 1),
        ("reservation_commit", "vm"): ("-1.5", 1),
        ("gateway_charge", "api_call"): ("-1", 2),
        ("expiry", None): ("-1", 1),
        ("refund", None): ("-3", 1),
        ("other", None): ("0.25", 1),
    }
    assert Decimal(_lines(body)[("usage", "storage_gib")][0]) < 0
    assert [line["kind"] for line in body["lines"]][:4] == ["top_up", "grant", "staff_credit", "staff_debit"]
    vm = next(line for line in body["lines"] if line["kind"] == "usage" and line["resource_type"] == "vm")
    assert vm["description"] == "Usage charges: Virtual machine (vm)"


def test_the_next_month_opens_where_the_last_one_closed_and_runs_to_date(two_months, platform):
    october, november = platform.get(OCT).json(), platform.get(NOV).json()
    assert november["opening_balance"] == october["closing_balance"]
    assert november["to_date"] is True
    assert _lines(november) == {("top_up", None): ("2", 1), ("usage", "vm"): ("-0.04", 1)}
    assert _adds_up(november)
    assert november["closing_balance"] == format_amount(balance_at(two_months, NOW + HOUR))
    assert november["closing_balance"] == format_amount(Account.objects.get(project=two_months).balance)


def test_csv_holds_the_same_lines_between_opening_and_closing_rows(two_months, platform):
    body = platform.get(OCT).json()
    response = platform.get(f"{OCT}?format=csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == 'attachment; filename="statement-acme-2026-10.csv"'
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))

    def plain(cell: str) -> str:
        return cell.removeprefix("'")

    assert (rows[0]["kind"], plain(rows[0]["amount"])) == ("opening_balance", body["opening_balance"])
    assert (rows[-1]["kind"], plain(rows[-1]["amount"])) == ("closing_balance", body["closing_balance"])
    assert [(r["kind"], r["resource_type"] or None, r["description"], plain(r["amount"]), int(r["count"]))
            for r in rows[1:-1]] == [(line["kind"], line["resource_type"], line["description"], line["amount"],
                                      line["count"]) for line in body["lines"]]
    # A negative amount would be a formula to a spreadsheet: it is quoted as text.
    assert all(r["amount"].startswith("'-") for r in rows[1:-1] if plain(r["amount"]).startswith("-"))


def test_an_empty_month_opens_and_closes_at_the_same_balance(platform):
    with time_machine.travel(OCTOBER, tick=False):
        ProjectFactory(slug="acme", balance="7")
    with time_machine.travel(datetime(2026, 12, 15, tzinfo=UTC), tick=False):
        body = platform.get("/api/v1/projects/acme/statements/2026-11").json()
    assert (body["opening_balance"], body["closing_balance"], body["lines"]) == ("7", "7", [])


@pytest.mark.parametrize("month", ["2026-13", "2026-00", "2026-1", "26-10", "2026-10-01", "abcd-ef", "２０２６-１０",
                                   "2026-09"])
def test_a_month_that_is_not_one_or_before_the_project_is_a_400(platform, month):
    with time_machine.travel(OCTOBER, tick=False):
        ProjectFactory(slug="acme")
        response = platform.get(f"/api/v1/projects/acme/statements/{month}")
        csv_response = platform.get(f"/api/v1/projects/acme/statements/{month}?format=csv")
    assert response.status_code == 400
    assert response.json()["error"] == "validation_error" and "month" in response.json()["detail"]
    assert (csv_response.status_code, csv_response["Content-Type"]) == (400, "application/json")


def test_a_future_month_is_a_400(platform):
    with time_machine.travel(OCTOBER, tick=False):
        ProjectFactory(slug="acme")
        response = platform.get("/api/v1/projects/acme/statements/2026-11")
    assert response.status_code == 400
    assert response.json()["detail"]["month"] == ["2026-11 has not begun: the latest statement is 2026-10 (to date)"]


def test_a_bad_format_is_a_400(platform):
    ProjectFactory(slug="acme")
    response = platform.get("/api/v1/projects/acme/statements/2026-11?format=xlsx")
    assert response.status_code == 400 and "format" in response.json()["detail"]


def test_a_tenant_sees_only_its_own_projects_statements(platform):
    acme = ProjectFactory(slug="acme", balance="5")
    ProjectFactory(slug="beta", balance="9")
    user = member(acme)
    browser = APIClient()
    browser.force_login(user)
    month = datetime.now(UTC).strftime("%Y-%m")
    assert browser.get(f"/api/v1/projects/acme/statements/{month}").json()["closing_balance"] == "5"
    assert browser.get(f"/api/v1/projects/beta/statements/{month}").status_code == 404
    key = ServiceClient(scoped_key(acme))
    assert key.get(f"/api/v1/projects/acme/statements/{month}").status_code == 200
    assert key.get(f"/api/v1/projects/beta/statements/{month}").status_code == 404
    outsider = APIClient()
    outsider.force_login(UserFactory(is_staff=True))  # staff without wallets.view_project
    assert outsider.get(f"/api/v1/projects/beta/statements/{month}").status_code == 404


def test_a_big_month_is_read_in_a_bounded_number_of_queries(platform, django_assert_max_num_queries):
    with time_machine.travel(OCT_WINDOW - 30 * HOUR, tick=True) as clock:
        acme = ProjectFactory(slug="acme", balance="1000")
        for hours in range(24):
            for code in ("vm", "vcpu", "memory_gib"):
                usage(acme, code, OCT_WINDOW - hours * HOUR, "1")
        clock.move_to(OCT_WINDOW + 2 * HOUR)
        for hours in reversed(range(24)):
            bill(OCT_WINDOW - hours * HOUR)
    with time_machine.travel(NOW, tick=False):
        platform.get(OCT)  # warm the key cache
        with django_assert_max_num_queries(10):
            body = platform.get(OCT).json()
    assert {(line["kind"], line["resource_type"], line["count"]) for line in body["lines"] if line["kind"] == "usage"} == {
        ("usage", "vm", 24), ("usage", "vcpu", 24), ("usage", "memory_gib", 24)}
    assert _adds_up(body)


def test_staff_who_see_every_project_read_its_statement_in_the_admin(platform):
    from django.contrib.auth.models import Permission
    from django.test import Client

    acme = ProjectFactory(slug="acme", balance="12")
    staff = UserFactory(is_staff=True)
    browser = Client()
    browser.force_login(staff)
    assert browser.get(f"/admin/billing/charge/statement/{acme.pk}/").status_code == 403
    staff.user_permissions.add(Permission.objects.get(codename="view_project"))
    page = browser.get(f"/admin/billing/charge/statement/{acme.pk}/")
    assert page.status_code == 200 and "Closing balance (to date)" in page.content.decode()
    assert f"/admin/billing/charge/statement/{acme.pk}/" in browser.get(f"/admin/wallets/project/{acme.pk}/change/").content.decode()
