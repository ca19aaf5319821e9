"""active → grace → suspended → active, with time travel, the status log and the outbound webhooks."""

import json
from datetime import timedelta

import pytest

from billing.models import ProjectStatusChange, WebhookEndpoint
from billing.services import lifecycle_sweep, projects_enter_grace_if_unfunded
from billing.services.webhooks import SIGNATURE_HEADER, verify
from wallets.models import Project
from wallets.tests.factories import ProjectFactory, fund

from .conftest import HOUR, NOW, WINDOW
from .factories import bill, usage

pytestmark = pytest.mark.django_db


def status(project) -> str:
    return Project.objects.get(id=project.id).status


def reserve(client) -> tuple[int, str | None]:
    """The admission answer (quotas API) to a small reservation."""
    response = client.post_idem("/api/v1/reservations", {"project": "acme", "resource_type": "vm", "quantity": "1",
                                                         "amount": "0.5"})
    return response.status_code, response.json().get("error")


def test_the_lifecycle_from_active_to_suspended_and_back(clock, receiver, platform, django_capture_on_commit_callbacks):
    endpoint = WebhookEndpoint.objects.create(url=receiver.url)
    acme = ProjectFactory(slug="acme", balance="1")
    usage(acme, "vm", WINDOW, "50")  # 2 credits: the balance goes to -1

    with django_capture_on_commit_callbacks(execute=True):
        bill(WINDOW)
    acme.refresh_from_db()
    assert acme.status == Project.Status.GRACE and not acme.admits_new_resources
    assert NOW + timedelta(hours=24) <= acme.grace_until <= NOW + timedelta(hours=24, minutes=1)
    assert receiver.events() == ["project.grace"]
    headers, body = receiver.requests[0]
    assert verify(secret=endpoint.secret, header=headers[SIGNATURE_HEADER], body=body)
    assert json.loads(body)["data"]["project"] == "acme" and json.loads(body)["data"]["available"] == "-1"
    assert reserve(platform) == (403, "project_suspended")

    clock.move_to(NOW + timedelta(hours=23))
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle_sweep()
    assert status(acme) == Project.Status.GRACE  # grace has not ended yet

    clock.move_to(NOW + timedelta(hours=25))
    with django_capture_on_commit_callbacks(execute=True):
        lifecycle_sweep()
        lifecycle_sweep()  # a repeat is a quiet no-op
    assert status(acme) == Project.Status.SUSPENDED
    assert receiver.events() == ["project.grace", "project.suspended"]
    assert reserve(platform) == (403, "project_suspended")

    with django_capture_on_commit_callbacks(execute=True):
        fund(acme, "5")  # funded at any point: active at once, through the ledger's funded hook
    acme.refresh_from_db()
    assert acme.status == Project.Status.ACTIVE and acme.grace_until is None
    assert receiver.events() == ["project.grace", "project.suspended", "project.reactivated"]
    assert reserve(platform) == (201, None)  # admitted again, with 4 credits available
    changes = list(ProjectStatusChange.objects.filter(project=acme).order_by("at").values_list("from_status", "to_status"))
    assert changes == [("active", "grace"), ("grace", "suspended"), ("suspended", "active")]


def test_a_funded_project_in_grace_returns_to_active_and_is_not_suspended(clock, django_capture_on_commit_callbacks):
    acme = ProjectFactory(slug="acme", balance="1")
    usage(acme, "vm", WINDOW, "50")
    with django_capture_on_commit_callbacks(execute=True):
        bill(WINDOW)
        fund(acme, "2")
    assert status(acme) == Project.Status.ACTIVE
    clock.move_to(NOW + timedelta(hours=30))
    lifecycle_sweep()
    assert status(acme) == Project.Status.ACTIVE


def test_a_charge_that_leaves_credits_keeps_the_project_active(clock):
    acme = ProjectFactory(slug="acme", balance="10")
    usage(acme, "vm", WINDOW, "1")
    bill(WINDOW)
    assert status(acme) == Project.Status.ACTIVE
    assert not ProjectStatusChange.objects.exists()


def test_an_available_balance_of_exactly_zero_starts_grace(clock):
    acme = ProjectFactory(slug="acme", balance="0.04")
    usage(acme, "vm", WINDOW, "1")
    bill(WINDOW)
    assert status(acme) == Project.Status.GRACE


def test_the_project_grace_period_overrides_the_setting(clock):
    acme = ProjectFactory(slug="acme", balance="0.01")
    Project.objects.filter(id=acme.id).update(grace_period_hours=2)
    usage(acme, "vm", WINDOW, "1")
    bill(WINDOW)
    clock.move_to(NOW + timedelta(hours=2, minutes=5))
    lifecycle_sweep()
    assert status(acme) == Project.Status.SUSPENDED


def test_entering_grace_twice_is_a_quiet_no_op(clock):
    acme = ProjectFactory(slug="acme", balance="0.01")
    usage(acme, "vm", WINDOW, "1")
    bill(WINDOW)
    first_until = Project.objects.get(id=acme.id).grace_until
    assert projects_enter_grace_if_unfunded(project_ids=[acme.id]) == []
    assert Project.objects.get(id=acme.id).grace_until == first_until
    assert ProjectStatusChange.objects.count() == 1


def test_a_suspended_project_is_still_billed_for_running_resources(clock):
    acme = ProjectFactory(slug="acme", balance="0.01")
    usage(acme, "vm", WINDOW, "1")
    bill(WINDOW)
    clock.move_to(NOW + timedelta(hours=25))
    lifecycle_sweep()
    usage(acme, "vm", WINDOW + 24 * HOUR, "1")
    bill(WINDOW + 24 * HOUR)
    acme.wallet.refresh_from_db()
    assert status(acme) == Project.Status.SUSPENDED
    assert acme.wallet.balance == -70000  # 0.01 - 2 × 0.04 credits


def test_the_sweep_catches_a_charged_project_left_active(clock):
    # As after a crash between a chunk's commit and its lifecycle step.
    acme = ProjectFactory(slug="acme", balance="0.01")
    usage(acme, "vm", WINDOW, "1")
    bill(WINDOW)
    Project.objects.filter(id=acme.id).update(status=Project.Status.ACTIVE, grace_until=None)
    assert lifecycle_sweep()["grace"] == 1
    assert status(acme) == Project.Status.GRACE


def test_one_project_that_fails_in_the_sweep_does_not_stop_the_others(clock, monkeypatch):
    from billing.services import lifecycle

    acme = ProjectFactory(slug="acme", balance="0.01")
    globex = ProjectFactory(slug="globex", balance="0.01")
    for project in (acme, globex):
        usage(project, "vm", WINDOW, "1")
    bill(WINDOW)
    clock.move_to(NOW + timedelta(hours=25))
    real = lifecycle.project_suspend_if_grace_over

    def broken_for_acme(*, project_id):
        if project_id == acme.id:
            raise RuntimeError("a bad row")
        return real(project_id=project_id)

    monkeypatch.setattr(lifecycle, "project_suspend_if_grace_over", broken_for_acme)
    outcome = lifecycle_sweep()
    assert outcome["suspended"] == 1 and outcome["failed"] == 1
    assert status(globex) == Project.Status.SUSPENDED
    monkeypatch.setattr(lifecycle, "project_suspend_if_grace_over", real)
    assert lifecycle_sweep()["suspended"] == 1  # the next sweep retries the one that failed
    assert status(acme) == Project.Status.SUSPENDED
