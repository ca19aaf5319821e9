"""A staff suspension: recorded with its reason and webhook, not lifted by money, lifted by staff only."""

import pytest

from billing.models import ProjectStatusChange, WebhookDelivery, WebhookEndpoint
from billing.services import lifecycle_sweep, project_lift_suspension, project_suspend_by_staff
from billing.services.lifecycle import project_enter_grace
from creditservice.lib.money import credits_to_micros
from wallets import ledger
from wallets.models import Project, Transfer
from wallets.tests.factories import ProjectFactory, fund

pytestmark = pytest.mark.django_db


def events(project) -> list[tuple[str, str, bool]]:
    return [(d.event_type, d.payload["data"]["status"], d.payload["data"]["suspended_by_staff"])
            for d in WebhookDelivery.objects.filter(payload__data__project=project.slug).order_by("id")]


def changes(project) -> list[tuple[str, str]]:
    return list(ProjectStatusChange.objects.filter(project=project).order_by("id").values_list("from_status", "to_status"))


def test_a_staff_suspension_is_a_recorded_transition_with_its_webhook():
    WebhookEndpoint.objects.create(url="https://hooks.example.com/cs")
    acme = ProjectFactory(slug="acme", balance="10")
    assert project_suspend_by_staff(project_id=acme.id, reason="abuse report #7", actor="user:1") is True
    acme.refresh_from_db()
    assert (acme.status, acme.suspended_by_staff, acme.suspension_reason) == ("suspended", True, "abuse report #7")
    change = ProjectStatusChange.objects.get(project=acme)
    assert (change.from_status, change.to_status) == ("active", "suspended")
    assert "abuse report #7" in change.reason and "user:1" in change.reason
    assert events(acme) == [("project.suspended", "suspended", True)]
    # A repeat is a quiet no-op: nothing more recorded.
    assert project_suspend_by_staff(project_id=acme.id, reason="again", actor="user:1") is False
    assert len(changes(acme)) == 1


def test_a_staff_suspension_needs_a_reason():
    acme = ProjectFactory(slug="acme", balance="10")
    for reason in ("", "   ", "x" * 201):
        with pytest.raises(ValueError):
            project_suspend_by_staff(project_id=acme.id, reason=reason, actor="user:1")
    assert Project.objects.get(id=acme.id).status == "active"
    assert not ProjectStatusChange.objects.exists()


def test_funding_and_the_sweep_do_not_lift_a_staff_suspension():
    acme = ProjectFactory(slug="acme", balance="10")
    project_suspend_by_staff(project_id=acme.id, reason="contract ended", actor="user:1")
    fund(acme, "50")
    ledger.transfer(project=acme, direction="in", system_code="promotions", amount=credits_to_micros("1"),
                    kind=Transfer.Kind.PROMOTION, idempotency_key="promo-1")
    assert lifecycle_sweep() == {"suspended": 0, "reactivated": 0, "grace": 0, "failed": 0}
    acme.refresh_from_db()
    assert (acme.status, acme.suspended_by_staff) == ("suspended", True)
    assert changes(acme) == [("active", "suspended")]


def test_staff_lift_the_suspension_of_a_funded_project_back_to_active():
    WebhookEndpoint.objects.create(url="https://hooks.example.com/cs")
    acme = ProjectFactory(slug="acme", balance="10")
    project_suspend_by_staff(project_id=acme.id, reason="abuse report #7", actor="user:1")
    assert project_lift_suspension(project_id=acme.id, actor="user:2") is True
    acme.refresh_from_db()
    assert (acme.status, acme.suspended_by_staff, acme.suspension_reason) == ("active", False, "")
    assert changes(acme) == [("active", "suspended"), ("suspended", "active")]
    assert events(acme)[-1] == ("project.reactivated", "active", False)
    assert project_lift_suspension(project_id=acme.id, actor="user:2") is False


def test_lifting_the_suspension_of_an_unfunded_project_starts_its_grace():
    acme = ProjectFactory(slug="acme")
    project_suspend_by_staff(project_id=acme.id, reason="abuse report #7", actor="user:1")
    project_lift_suspension(project_id=acme.id, actor="user:2")
    acme.refresh_from_db()
    assert acme.status == "grace" and acme.grace_until is not None and not acme.suspended_by_staff
    assert changes(acme)[-1] == ("suspended", "grace")


def test_a_staff_suspension_of_a_project_in_grace_outlasts_the_grace_and_the_funding():
    acme = ProjectFactory(slug="acme", balance="1")
    ledger.transfer(project=acme, direction="out", system_code="revenue", amount=credits_to_micros("2"),
                    kind=Transfer.Kind.USAGE, idempotency_key="usage-1")
    project_enter_grace(project_id=acme.id)
    project_suspend_by_staff(project_id=acme.id, reason="fraud check", actor="user:1")
    fund(acme, "100")
    acme.refresh_from_db()
    assert (acme.status, acme.suspended_by_staff, acme.grace_until) == ("suspended", True, None)


def test_a_staff_suspension_holds_in_the_database():
    from django.db import IntegrityError, transaction

    acme = ProjectFactory(slug="acme")
    with pytest.raises(IntegrityError), transaction.atomic():
        Project.objects.filter(id=acme.id).update(suspended_by_staff=True, suspension_reason="no status change")
    with pytest.raises(IntegrityError), transaction.atomic():
        Project.objects.filter(id=acme.id).update(status="suspended", suspended_by_staff=True, suspension_reason="")
