"""The portal's alerts page: members see a project's alerts; only its owners add and remove them."""

import pytest

from billing.models import ThresholdAlert
from wallets.models import Membership
from wallets.tests.factories import ProjectFactory, member

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme(db):
    return ProjectFactory(slug="acme", balance="100")


def test_an_owner_adds_and_removes_an_alert(client, acme):
    client.force_login(member(acme, role=Membership.Role.OWNER))
    response = client.post("/portal/acme/alerts", {"metric": "available", "level": "warning", "threshold": "25.5"})
    assert response.status_code == 303
    page = client.get("/portal/acme/alerts").content.decode()
    assert "25.5 credits" in page and "armed" in page and "Add alert" in page
    alert = ThresholdAlert.objects.get()
    assert client.post(f"/portal/acme/alerts/{alert.id}/delete").status_code == 303
    assert not ThresholdAlert.objects.exists()


def test_a_bad_threshold_is_shown_on_the_page(client, acme):
    client.force_login(member(acme, role=Membership.Role.OWNER))
    response = client.post("/portal/acme/alerts", {"metric": "budget", "level": "info", "threshold": "150"})
    assert response.status_code == 422
    assert "between 1 and 100 percent" in response.content.decode()
    assert not ThresholdAlert.objects.exists()


def test_a_member_who_is_not_an_owner_only_reads(client, acme):
    alert = ThresholdAlert.objects.create(project=acme, metric="budget", threshold=80)
    client.force_login(member(acme))
    page = client.get("/portal/acme/alerts").content.decode()
    assert "80 percent" in page and "Add alert" not in page
    assert client.post("/portal/acme/alerts", {"metric": "budget", "level": "info", "threshold": "70"}).status_code == 403
    assert client.post(f"/portal/acme/alerts/{alert.id}/delete").status_code == 403
    assert ThresholdAlert.objects.count() == 1
