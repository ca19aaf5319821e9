"""The portal says why a project is suspended: by staff (with their reason) or because money ran out."""

import pytest

from billing.services import project_suspend_by_staff
from wallets.models import Project
from wallets.tests.factories import fund

pytestmark = pytest.mark.django_db


def test_a_staff_suspension_shows_its_reason_not_an_empty_balance(browser, project):
    project_suspend_by_staff(project_id=project.id, reason="abuse report #7", actor="user:1")
    fund(project, "5")
    html = browser.get("/portal/acme/").content.decode()
    assert "suspended by your platform's staff" in html
    assert 'data-testid="suspension-reason">abuse report #7<' in html
    assert "topping up does not lift it" in html
    assert "balance ran out" not in html


def test_a_suspension_for_money_says_the_balance_ran_out(browser, project):
    Project.objects.filter(id=project.id).update(status="suspended")
    html = browser.get("/portal/acme/").content.decode()
    assert "balance ran out" in html and "suspension-reason" not in html
