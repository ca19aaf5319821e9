"""The admin home page: the staff dashboard above the app list, each card only for staff who may view its model."""

import html
import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone

from billing.models import BillingRun
from quotas.models import Reservation
from quotas.tests.helpers import reserve
from wallets.tests.factories import ProjectFactory, UserFactory

from .staff_dashboard_data import billing_run, hour_of, ledger_check, set_status, stripe_event, webhook_delivery

pytestmark = pytest.mark.django_db


def _staff(*perms: str):
    """A staff user with exactly these permissions ("app_label.codename")."""
    user = UserFactory(is_staff=True)
    for perm in perms:
        app_label, codename = perm.split(".")
        user.user_permissions.add(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return user


def _text(page: str) -> str:
    """The page as read: tags dropped, spaces collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", page)).split())


def _links(page: str) -> list[str]:
    return [html.unescape(href) for href in re.findall(r'href="([^"]+)"', page)]


def test_a_superuser_sees_every_figure_with_its_link(client, project):
    today = timezone.now().date()
    set_status(ProjectFactory(slug="late", balance="0.5"), "suspended")
    billing_run(hour_of(today - timedelta(days=1)), "12.5")
    BillingRun.objects.filter(id=billing_run(hour_of(today), "0", status="failed").id).update(
        error="chunk 0 (projects 1-9): OperationalError: the database went away")
    webhook_delivery("failed")
    stripe_event("failed")
    ledger_check(hour_of(today, 2), drifts=["wallet of project 'acme': reserved -1 is negative"])
    client.force_login(UserFactory(is_staff=True, is_superuser=True))

    page = client.get("/admin/").content.decode()

    assert re.search(r'data-testid="credits-outstanding">100\.5<', page)
    assert re.search(r'data-testid="projects-suspended"><strong>1</strong> suspended', page)
    assert page.count("<rect ") == 30
    assert "12.5 credits charged from" in page
    assert "Failed" in page and "OperationalError: the database went away" in page  # the last run, failed
    assert "1 drift" in page and "reserved -1 is negative" in page
    assert "1 failed webhook delivery" in _text(page) and "1 failed Stripe event" in _text(page)
    links = _links(page)
    assert "/admin/wallets/project/?status__exact=suspended" in links
    assert "/admin/billing/webhookdelivery/?status__exact=failed" in links
    assert "/admin/payments/stripeevent/?status__exact=received" in links
    assert 'id="content-main"' in page  # the app list is still there, below


def test_the_overdue_reservations_link_lists_exactly_those(client, platform, project):
    overdue, live = (reserve(platform, project="acme", amount="1").json()["id"] for _ in range(2))
    Reservation.objects.filter(id=overdue).update(expires_at=timezone.now() - timedelta(minutes=5))
    client.force_login(UserFactory(is_staff=True, is_superuser=True))

    page = client.get("/admin/").content.decode()
    assert re.search(r'data-testid="overdue-reservations"><strong>1</strong> pending reservation past expiry', page)
    link = next(href for href in _links(page) if href.startswith("/admin/quotas/reservation/?"))
    listing = client.get(link)

    assert listing.status_code == 200
    assert f"/admin/quotas/reservation/{overdue}/change/" in listing.content.decode()
    assert f"/admin/quotas/reservation/{live}/change/" not in listing.content.decode()


def test_staff_without_the_view_permission_on_billing_runs_do_not_see_billing(client, project):
    billing_run(hour_of(timezone.now().date()), "12.5")
    set_status(ProjectFactory(slug="late"), "grace")
    client.force_login(_staff("wallets.view_project", "billing.view_owedcharge"))

    page = client.get("/admin/").content.decode()

    assert re.search(r'data-testid="projects-grace"><strong>1</strong> in grace', page)
    assert 'data-testid="owed-charges"' in page
    assert 'data-testid="last-billing-run"' not in page
    assert 'data-testid="credits-charged"' not in page and "<rect " not in page
    assert "12.5" not in page
    assert 'data-testid="credits-outstanding"' not in page  # no view permission on accounts either
    assert 'data-testid="ledger-check"' not in page


def test_staff_who_may_view_billing_runs_see_the_last_run_and_the_chart(client):
    run = billing_run(hour_of(timezone.now().date()), "12.5")
    client.force_login(_staff("billing.view_billingrun"))

    page = client.get("/admin/").content.decode()

    assert f"/admin/billing/billingrun/{run.pk}/change/" in _links(page)
    assert page.count("<rect ") == 30
    assert 'data-testid="projects-grace"' not in page


def test_a_staff_user_with_no_permission_sees_no_dashboard_figure(client, project):
    client.force_login(_staff())

    response = client.get("/admin/")

    assert response.status_code == 200
    assert 'data-testid="dashboard"' in response.content.decode()
    assert 'class="module card"' not in response.content.decode()
