"""Threshold alerts: one notification per crossing (email to owners, signed webhook), recovery, levels,
budget percent and runway, evaluated after wallet commits and by the sweep."""

import json
from datetime import timedelta

import pytest
from django.core import mail

from billing.models import AlertNotification, ThresholdAlert, WebhookDelivery, WebhookEndpoint
from billing.services.alerts import AlertRefused, alert_create, alerts_sweep
from billing.services.webhooks import SIGNATURE_HEADER, verify
from creditservice.lib.errors import Conflict
from creditservice.lib.money import credits_to_micros
from quotas.services.limits import budget_set
from wallets import ledger
from wallets.models import Account, Membership, Transfer
from wallets.services import wallet_debit
from wallets.tests.factories import ProjectFactory, UserFactory, fund, member

from .conftest import HOUR, WINDOW
from .factories import bill, usage

pytestmark = pytest.mark.django_db


@pytest.fixture
def run(django_capture_on_commit_callbacks):
    """Run a step and what it leaves for after its commit (the alert evaluation, the email task)."""
    def step(function, *args, **kwargs):
        with django_capture_on_commit_callbacks(execute=True):
            return function(*args, **kwargs)
    return step


@pytest.fixture
def acme(run):
    owner = UserFactory(username="olga", email="olga@example.com")
    project = run(ProjectFactory, slug="acme", balance="100", owner=owner)
    member(project, UserFactory(username="max", email="max@example.com"))  # a member, not an owner
    return project


def debit(run, project, credits, n=[0]):
    n[0] += 1
    run(wallet_debit, project=project, amount=credits_to_micros(credits), reason="test", idempotency_key=f"d{n[0]}",
        actor="system")


def spend(run, project, credits, n=[0]):
    """Usage spend (counts towards the budget)."""
    n[0] += 1
    run(ledger.transfer, project=project, direction="out", system_code=Account.System.REVENUE,
        amount=credits_to_micros(credits), kind=Transfer.Kind.USAGE, idempotency_key=f"u{n[0]}")


def deliveries(event_type):
    return [d.payload["data"] for d in WebhookDelivery.objects.filter(event_type=event_type).order_by("id")]


def test_a_crossing_notifies_once_while_debits_stay_below(acme, run):
    WebhookEndpoint.objects.create(url="http://127.0.0.1:9/hook", secret="whsec-test")
    run(alert_create, project=acme, metric="available", level="warning", threshold=credits_to_micros("50"))

    debit(run, acme, "55")  # 100 → 45: crossed
    for _ in range(10):  # 45 → 5: ten more debits below the threshold
        debit(run, acme, "4")

    assert [m.to for m in mail.outbox] == [["olga@example.com"]]  # the owner only, not the member
    assert "available" in mail.outbox[0].subject and "[warning]" in mail.outbox[0].subject
    [data] = deliveries("wallet.threshold")
    assert data == {"project": "acme", "alert": data["alert"], "metric": "available", "level": "warning",
                    "unit": "credits", "threshold": "50", "value": "45", "state": "crossed"}
    assert ThresholdAlert.objects.get().state == "fired"


def test_recovered_once_when_funded_above_and_a_new_crossing_notifies_again(acme, run):
    WebhookEndpoint.objects.create(url="http://127.0.0.1:9/hook")
    run(alert_create, project=acme, metric="available", level="critical", threshold=credits_to_micros("50"))
    debit(run, acme, "60")  # 40: crossed
    run(fund, acme, "5")  # 45: still below, nothing
    run(fund, acme, "20")  # 65: recovered
    run(fund, acme, "20")  # 85: still above, nothing
    debit(run, acme, "40")  # 45: crossed again

    assert [d["state"] for d in deliveries("wallet.threshold")] == ["crossed", "recovered", "crossed"]
    assert [d["value"] for d in deliveries("wallet.threshold")] == ["40", "65", "45"]
    assert len(mail.outbox) == 3 and mail.outbox[1].subject.startswith("[recovered]")


def test_each_level_notifies_at_its_own_threshold(acme, run):
    WebhookEndpoint.objects.create(url="http://127.0.0.1:9/hook")
    for level, threshold in (("info", "80"), ("warning", "50"), ("critical", "10")):
        run(alert_create, project=acme, metric="available", level=level, threshold=credits_to_micros(threshold))
    debit(run, acme, "30")  # 70
    debit(run, acme, "30")  # 40
    debit(run, acme, "35")  # 5

    assert [(d["level"], d["threshold"]) for d in deliveries("wallet.threshold")] == [
        ("info", "80"), ("warning", "50"), ("critical", "10")]


def test_budget_percent_crosses_at_or_above_and_recovers_below(acme, run):
    WebhookEndpoint.objects.create(url="http://127.0.0.1:9/hook")
    run(budget_set, project_id=acme.id, hard_limit=credits_to_micros("40"), soft_limit=None)
    run(alert_create, project=acme, metric="budget", level="warning", threshold=80)
    spend(run, acme, "31")  # 77 %
    assert deliveries("budget.threshold") == []
    spend(run, acme, "1")  # 80 %: crossed
    spend(run, acme, "2")  # 85 %: still above
    run(budget_set, project_id=acme.id, hard_limit=credits_to_micros("100"), soft_limit=None)
    run(alerts_sweep)  # 34 %: recovered (a budget change is no wallet change: the sweep sees it)

    assert [(d["state"], d["value"], d["unit"]) for d in deliveries("budget.threshold")] == [
        ("crossed", "80", "percent"), ("recovered", "34", "percent")]


def test_runway_follows_the_burn_rate_on_the_sweep(clock, acme, run):
    WebhookEndpoint.objects.create(url="http://127.0.0.1:9/hook")
    run(alert_create, project=acme, metric="runway", level="critical", threshold=1000)
    run(alerts_sweep)
    assert deliveries("runway.threshold") == []  # no burn yet: the runway is unbounded

    usage(acme, "vm", WINDOW - HOUR, "30")  # 1.2 credits a window
    usage(acme, "vm", WINDOW, "30")
    run(bill, WINDOW - HOUR)
    run(bill, WINDOW)
    run(alerts_sweep)  # 97.6 credits at 0.1 an hour: 976 hours
    clock.move_to(WINDOW + timedelta(hours=26))
    run(alerts_sweep)  # the charges left the last 24 h: no burn, recovered

    assert [(d["state"], d["value"]) for d in deliveries("runway.threshold")] == [("crossed", "976"), ("recovered", None)]


def test_the_webhook_is_signed_like_lifecycle_events(acme, run, receiver):
    WebhookEndpoint.objects.create(url=receiver.url, secret="whsec-alerts", event_types=["wallet.threshold"])
    run(alert_create, project=acme, metric="available", level="info", threshold=credits_to_micros("50"))
    debit(run, acme, "60")

    [(headers, body)] = receiver.requests
    assert verify(secret="whsec-alerts", header=headers[SIGNATURE_HEADER], body=body)
    assert headers["Creditservice-Event"] == "wallet.threshold"
    payload = json.loads(body)
    assert payload["type"] == "wallet.threshold" and payload["data"]["state"] == "crossed"


def test_an_alert_already_crossed_when_added_fires_once(acme, run):
    run(alert_create, project=acme, metric="available", level="info", threshold=credits_to_micros("500"))
    debit(run, acme, "1")
    assert AlertNotification.objects.count() == 1 and len(mail.outbox) == 1


def test_no_owner_with_email_sends_no_mail_but_the_webhook_goes(run):
    project = run(ProjectFactory, slug="lone", balance="10")
    WebhookEndpoint.objects.create(url="http://127.0.0.1:9/hook")
    run(alert_create, project=project, metric="available", level="info", threshold=credits_to_micros("5"))
    debit(run, project, "6")
    assert mail.outbox == [] and len(deliveries("wallet.threshold")) == 1
    assert AlertNotification.objects.get().emailed_at is not None


def test_a_lost_email_task_is_sent_by_the_sweep(acme, django_capture_on_commit_callbacks, run):
    run(alert_create, project=acme, metric="available", level="info", threshold=credits_to_micros("50"))
    with django_capture_on_commit_callbacks(execute=False):  # the commit happens; its callbacks are lost
        wallet_debit(project=acme, amount=credits_to_micros("60"), reason="t", idempotency_key="lost", actor="system")
    assert mail.outbox == []
    run(alerts_sweep)  # evaluates (crossed) and sends
    run(alerts_sweep)  # nothing more
    assert len(mail.outbox) == 1


def test_bounds_and_duplicates_are_refused(acme, run):
    for metric, threshold in (("runway", 0), ("budget", 101), ("available", -1)):
        with pytest.raises(AlertRefused):
            alert_create(project=acme, metric=metric, level="info", threshold=threshold)
    run(alert_create, project=acme, metric="budget", level="info", threshold=90)
    with pytest.raises(Conflict):
        alert_create(project=acme, metric="budget", level="critical", threshold=90)


def test_a_project_without_alerts_is_not_evaluated(acme, run, django_assert_max_num_queries):
    other = run(ProjectFactory, slug="other", balance="10")
    run(alert_create, project=other, metric="available", level="info", threshold=1)
    assert Membership.objects.filter(project=acme).count() == 2
    debit(run, acme, "1")  # warms the cache of projects with alerts
    with django_assert_max_num_queries(0):
        from billing.services.alerts import alerts_after_wallet_change

        alerts_after_wallet_change(acme.id)
