"""GET/POST /projects/{slug}/alerts and DELETE /alerts/{id}."""

import pytest
from rest_framework.test import APIClient

from billing.models import ThresholdAlert
from creditservice.testing.fixtures import ServiceClient
from wallets.tests.factories import ProjectFactory, member, scoped_key

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme(db):
    return ProjectFactory(slug="acme", balance="100")


def test_an_alert_is_added_listed_and_removed(platform, acme, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = platform.post_idem("/api/v1/projects/acme/alerts",
                                      {"metric": "available", "level": "critical", "threshold": "150.5"})
    assert response.status_code == 201, response.json()
    body = response.json()
    # Already below 150.5 when added: its first evaluation fired it.
    assert {k: body[k] for k in ("metric", "level", "threshold", "unit")} == {
        "metric": "available", "level": "critical", "threshold": "150.5", "unit": "credits"}
    [listed] = platform.get("/api/v1/projects/acme/alerts").json()["results"]
    assert (listed["state"], listed["last_value"]) == ("fired", "100")

    assert platform.delete(f"/api/v1/alerts/{body['id']}").status_code == 204
    assert platform.get("/api/v1/projects/acme/alerts").json()["results"] == []
    assert platform.delete(f"/api/v1/alerts/{body['id']}").json()["error"] == "not_found"


def test_a_retried_post_adds_one_alert(platform, acme):
    body = {"metric": "runway", "level": "warning", "threshold": "48"}
    first = platform.post_idem("/api/v1/projects/acme/alerts", body, key="alert-1")
    again = platform.post_idem("/api/v1/projects/acme/alerts", body, key="alert-1")
    assert first.status_code == again.status_code == 201 and first.json() == again.json()
    assert ThresholdAlert.objects.count() == 1
    assert platform.post("/api/v1/projects/acme/alerts", body, format="json").json()["error"] == "validation_error"


def test_refusals_are_in_the_error_shape(platform, acme):
    post = lambda body: platform.post_idem("/api/v1/projects/acme/alerts", body)  # noqa: E731
    assert post({"metric": "budget", "level": "info", "threshold": "101"}).json()["error"] == "alert_refused"
    assert post({"metric": "budget", "level": "info", "threshold": "90"}).status_code == 201
    duplicate = post({"metric": "budget", "level": "critical", "threshold": "90"})
    assert (duplicate.status_code, duplicate.json()["error"]) == (409, "alert_exists")
    bad = post({"metric": "runway", "level": "loud", "threshold": "2"})
    assert bad.status_code == 400 and set(bad.json()) >= {"error", "detail"}
    for threshold in range(1, 20):
        post({"metric": "runway", "level": "info", "threshold": str(threshold)})
    over = post({"metric": "runway", "level": "info", "threshold": "100"})
    assert (over.status_code, over.json()["error"]) == (422, "alert_refused")


def test_a_project_key_and_a_member_read_but_do_not_add_or_remove(platform, acme):
    alert_id = platform.post_idem("/api/v1/projects/acme/alerts",
                                  {"metric": "budget", "level": "info", "threshold": "80"}).json()["id"]
    key = ServiceClient(scoped_key(acme))
    session = APIClient()
    session.force_login(member(acme))
    for client in (key, session):
        assert len(client.get("/api/v1/projects/acme/alerts").json()["results"]) == 1
        refused = client.post("/api/v1/projects/acme/alerts", {"metric": "budget", "level": "info", "threshold": "70"},
                              format="json", HTTP_IDEMPOTENCY_KEY="x")
        assert refused.status_code == 403 and refused.json()["error"] == "forbidden"
        assert client.delete(f"/api/v1/alerts/{alert_id}").status_code == 403
    assert ThresholdAlert.objects.count() == 1


def test_a_reservation_committed_below_the_threshold_notifies_once(platform, acme, django_capture_on_commit_callbacks):
    from django.core import mail

    from wallets.models import Membership
    from wallets.tests.factories import UserFactory

    Membership.objects.create(project=acme, user=UserFactory(email="olga@example.com"), role=Membership.Role.OWNER)
    with django_capture_on_commit_callbacks(execute=True):
        platform.post_idem("/api/v1/projects/acme/alerts", {"metric": "available", "level": "warning", "threshold": "50"})
    for i in range(3):  # 100 → 40 → 20 → 0: the hot path's commit, crossing once
        with django_capture_on_commit_callbacks(execute=True):
            held = platform.post_idem("/api/v1/reservations", {"project": "acme", "resource_type": "vm", "quantity": "1",
                                                               "amount": "60" if i == 0 else "20"})
            assert held.status_code == 201, held.json()
            committed = platform.post(f"/api/v1/reservations/{held.json()['id']}/commit", {}, format="json")
            assert committed.status_code == 200, committed.json()
    assert [m.to for m in mail.outbox] == [["olga@example.com"]]
    assert ThresholdAlert.objects.get().state == "fired"
