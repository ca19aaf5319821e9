"""A refund that takes the wallet to zero or below moves the project to grace, as a usage charge does."""

from billing.models import ProjectStatusChange, WebhookDelivery, WebhookEndpoint
from creditservice.lib.money import credits_to_micros
from payments.tests.test_webhook import completed, refunded, top_up  # noqa: F401  (top_up is a fixture)
from wallets.models import Project
from wallets.services import wallet_debit


def status(project) -> str:
    return Project.objects.get(id=project.id).status


def test_a_refund_that_leaves_the_wallet_unfunded_starts_grace(webhook, fake_stripe, top_up, project):  # noqa: F811
    WebhookEndpoint.objects.create(url="https://hooks.example.com/cs")
    webhook.send(completed(fake_stripe, top_up))  # 125 credits
    wallet_debit(project=project, amount=credits_to_micros("120"), reason="spent", idempotency_key="spend",
                 actor="system")
    response = webhook.send(refunded(fake_stripe, top_up, 2500))  # the 25 credits taken back: -20
    assert response.status_code == 200 and response.json()["status"] == "processed"
    assert status(project) == "grace"
    change = ProjectStatusChange.objects.get(project=project)
    assert (change.from_status, change.to_status) == ("active", "grace")
    assert change.grace_until is not None
    delivery = WebhookDelivery.objects.get()
    assert (delivery.event_type, delivery.payload["data"]["available"]) == ("project.grace", "-20")


def test_a_refund_that_leaves_credits_available_changes_no_status(webhook, fake_stripe, top_up, project):  # noqa: F811
    webhook.send(completed(fake_stripe, top_up))
    webhook.send(refunded(fake_stripe, top_up, 2500))
    assert status(project) == "active"
    assert not ProjectStatusChange.objects.exists()


def test_a_repeated_refund_event_enters_grace_once(webhook, fake_stripe, top_up, project):  # noqa: F811
    webhook.send(completed(fake_stripe, top_up))
    wallet_debit(project=project, amount=credits_to_micros("120"), reason="spent", idempotency_key="spend",
                 actor="system")
    event = refunded(fake_stripe, top_up, 2500)
    webhook.send(event)
    webhook.send(dict(event, id="evt_test_another_delivery"))
    assert status(project) == "grace"
    assert ProjectStatusChange.objects.count() == 1
