"""The staff dashboard's figures (portal/staff_dashboard.py), from rows as the services leave them."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing.models import BillingRun, OwedCharge, WebhookDelivery
from payments.models import StripeEvent
from portal.staff_dashboard import credits_charged_per_day, staff_dashboard
from quotas.models import Reservation
from quotas.tests.helpers import release, reserve
from wallets.models import Account, Project
from wallets.selectors import wallet_figures
from wallets.tests.factories import ProjectFactory

from .staff_dashboard_data import (
    billing_run,
    hour_of,
    ledger_check,
    owed_charge,
    set_status,
    stripe_event,
    webhook_delivery,
)

pytestmark = pytest.mark.django_db

TODAY = datetime(2026, 3, 30, tzinfo=UTC).date()


def everything(model) -> bool:
    return True


def test_credits_outstanding_is_every_wallets_balance_as_the_wallet_api_reads_it(platform, project):
    ProjectFactory(slug="beta", balance="2.5")
    ProjectFactory(slug="gamma", balance="0.000001")
    ProjectFactory(slug="empty")
    reserve(platform, project="acme", amount="40")  # a hold moves reserved, never the balance

    dashboard = staff_dashboard(can_view=everything)

    assert dashboard.credits_outstanding == 102_500_001  # 100 + 2.5 + 0.000001 credits, exact
    wallets = Account.objects.filter(kind=Account.Kind.WALLET)
    assert dashboard.credits_outstanding == sum(f.balance for f in wallet_figures(wallets).values())


def test_credits_charged_has_every_one_of_the_30_days_zeros_included():
    billing_run(hour_of(TODAY, 3), "1.5")
    billing_run(hour_of(TODAY, 4), "2.25")
    billing_run(hour_of(TODAY - timedelta(days=3), 23), "4")
    billing_run(hour_of(TODAY - timedelta(days=29)), "0.000001")  # the first day of the 30
    billing_run(hour_of(TODAY - timedelta(days=30)), "100")  # a day too old
    billing_run(hour_of(TODAY - timedelta(days=5)), "-3")  # more credit-back than charges that day

    days = credits_charged_per_day(today=TODAY)

    assert len(days) == 30
    assert [d.day for d in days] == [TODAY - timedelta(days=29 - i) for i in range(30)]
    by_day = {d.day: d.amount for d in days}
    assert by_day[TODAY] == 3_750_000
    assert by_day[TODAY - timedelta(days=3)] == 4_000_000
    assert by_day[TODAY - timedelta(days=29)] == 1
    assert by_day[TODAY - timedelta(days=5)] == 0
    assert sum(by_day.values()) == 7_750_001
    assert sum(1 for d in days if d.amount == 0) == 27


def test_a_runs_late_retries_count_on_the_day_of_its_window():
    run = billing_run(hour_of(TODAY - timedelta(days=1), 22), "1", status=BillingRun.Status.PARTIAL)
    # The owed projects charged later: billing adds what the retry charged to the run's total.
    BillingRun.objects.filter(id=run.id).update(credits_charged=run.credits_charged + 500_000)

    by_day = {d.day: d.amount for d in credits_charged_per_day(today=TODAY)}

    assert by_day[TODAY - timedelta(days=1)] == 1_500_000
    assert by_day[TODAY] == 0


def test_projects_in_grace_and_suspended_are_counted():
    for slug, status in [("g1", "grace"), ("g2", "grace"), ("s1", "suspended"), ("c1", "closed"), ("a1", "active")]:
        set_status(ProjectFactory(slug=slug), status)

    projects = staff_dashboard(can_view=everything).projects

    assert (projects.grace, projects.suspended) == (2, 1)


def test_only_pending_reservations_past_their_expiry_are_overdue(platform, project):
    overdue, live, released = (reserve(platform, project="acme", amount="1").json()["id"] for _ in range(3))
    release(platform, released)
    past = timezone.now() - timedelta(minutes=5)
    Reservation.objects.filter(id__in=[overdue, released]).update(expires_at=past)

    assert staff_dashboard(can_view=everything).overdue_reservations == 1
    # As of a moment before they expired, none was overdue.
    assert staff_dashboard(can_view=everything, now=past - timedelta(minutes=1)).overdue_reservations == 0


def test_failed_deliveries_failed_and_unprocessed_stripe_events_and_owed_charges_are_counted(project):
    for status in ["failed", "failed", "delivered", "retrying"]:
        webhook_delivery(status)
    for status in ["failed", "received", "received", "processed", "ignored"]:
        stripe_event(status)
    run = billing_run(hour_of(TODAY), "1", status=BillingRun.Status.PARTIAL)
    owed_charge(run, project)
    other = ProjectFactory(slug="other")
    owed_charge(billing_run(hour_of(TODAY, 1), "1"), other, status=OwedCharge.Status.CHARGED)

    dashboard = staff_dashboard(can_view=everything)

    assert dashboard.failed_webhook_deliveries == 2
    assert (dashboard.stripe_events.failed, dashboard.stripe_events.unprocessed) == (1, 2)
    assert dashboard.owed_charges == 1


def test_the_last_billing_run_and_ledger_check_are_the_newest():
    empty = staff_dashboard(can_view=everything)
    assert empty.last_billing_run.run is None
    assert empty.last_ledger_check.check is None

    billing_run(hour_of(TODAY, 1), "1")
    newest = billing_run(hour_of(TODAY, 2), "1", status=BillingRun.Status.FAILED)
    billing_run(hour_of(TODAY - timedelta(days=1), 23), "1")
    ledger_check(hour_of(TODAY - timedelta(days=1), 2))
    last_night = ledger_check(hour_of(TODAY, 2), drifts=["wallet of project 'acme': reserved -1 is negative"])

    dashboard = staff_dashboard(can_view=everything)

    assert dashboard.last_billing_run.run == newest
    assert dashboard.last_billing_run.run.status == "failed"
    assert dashboard.last_ledger_check.check == last_night
    assert not dashboard.last_ledger_check.check.ok


def test_a_figure_the_user_may_not_view_is_left_out_and_not_read(django_assert_num_queries, project):
    billing_run(hour_of(TODAY), "1")
    with django_assert_num_queries(0):
        nothing = staff_dashboard(can_view=lambda model: False)
    assert all(getattr(nothing, name) is None for name in (
        "credits_outstanding", "credits_charged", "projects", "failed_webhook_deliveries", "stripe_events",
        "overdue_reservations", "last_billing_run", "owed_charges", "last_ledger_check"))

    only_projects = staff_dashboard(can_view=lambda model: model is Project)
    assert only_projects.projects is not None
    assert only_projects.last_billing_run is None and only_projects.credits_charged is None


def test_the_number_of_queries_does_not_grow_with_the_projects(project):
    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            staff_dashboard(can_view=everything)
        return len(captured)

    few = queries()
    for n in range(30):
        set_status(ProjectFactory(slug=f"many-{n}", balance="1"), "grace" if n % 2 else "suspended")
        webhook_delivery(WebhookDelivery.Status.FAILED)
        stripe_event(StripeEvent.Status.FAILED)
    assert queries() == few <= 10
