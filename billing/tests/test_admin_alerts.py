"""The admin's threshold alerts: a list with each alert's state for viewers; removal only with its permission."""

import pytest
from django.contrib.auth.models import Permission

from billing.models import ThresholdAlert
from billing.services.alerts import alert_create
from wallets.tests.factories import ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


def _staff(*codenames: str):
    user = UserFactory(is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(content_type__app_label="billing", codename__in=codenames))
    return user


@pytest.fixture
def alert(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        return alert_create(project=ProjectFactory(slug="acme", balance="10"), metric="available", level="critical",
                            threshold=20_000_000)


def test_viewers_see_each_alert_with_its_state_and_cannot_remove_it(client, alert):
    client.force_login(_staff("view_thresholdalert"))
    page = client.get("/admin/billing/thresholdalert/").content.decode()
    assert "acme" in page and "20 credits" in page and "fired" in page and "10 credits" in page
    response = client.post(f"/admin/billing/thresholdalert/{alert.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
    assert ThresholdAlert.objects.filter(pk=alert.pk).exists()


def test_staff_with_the_delete_permission_remove_an_alert(client, alert):
    client.force_login(_staff("view_thresholdalert", "delete_thresholdalert"))
    response = client.post(f"/admin/billing/thresholdalert/{alert.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not ThresholdAlert.objects.exists()
