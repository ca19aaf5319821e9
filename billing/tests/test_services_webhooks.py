"""Outbound webhooks: signed, delivered after commit, retried with back-off, logged, redeliverable."""

import hashlib
import hmac
import json
from datetime import timedelta

import pytest

from billing.models import WebhookDelivery, WebhookEndpoint
from billing.services import webhook_deliveries_redeliver, webhook_event_emit
from billing.services.webhooks import SIGNATURE_HEADER, sign, verify
from billing.tasks import webhook_deliveries_due
from wallets.tests.factories import ProjectFactory

from .conftest import NOW

pytestmark = pytest.mark.django_db


def emit(project, capture, event="project.grace"):
    with capture(execute=True):
        return webhook_event_emit(project=project, event_type=event, data={"status": "grace"})


def test_a_delivery_is_signed_over_timestamp_and_body(clock, receiver, django_capture_on_commit_callbacks):
    endpoint = WebhookEndpoint.objects.create(url=receiver.url, secret="whsec-test")
    acme = ProjectFactory(slug="acme")
    emit(acme, django_capture_on_commit_callbacks)

    headers, body = receiver.requests[0]
    timestamp, signature = (part.split("=", 1)[1] for part in headers[SIGNATURE_HEADER].split(","))
    expected = hmac.new(b"whsec-test", f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    assert signature == expected
    assert abs(int(timestamp) - int(NOW.timestamp())) < 60
    assert headers["Creditservice-Event"] == "project.grace"
    payload = json.loads(body)
    assert payload["type"] == "project.grace" and payload["data"]["project"] == "acme"
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("delivered", 1, 200)
    assert delivery.endpoint == endpoint
    # A receiver refuses a tampered body or another secret.
    assert not verify(secret="whsec-test", header=headers[SIGNATURE_HEADER], body=body.replace(b"acme", b"evil"))
    assert not verify(secret="other", header=headers[SIGNATURE_HEADER], body=body)


def test_an_old_signature_is_refused_by_the_receiver_check(db):
    body = b'{"x":1}'
    header = sign(secret="s", timestamp=1_000_000, body=body)
    assert verify(secret="s", header=header, body=body, now=1_000_100)
    assert not verify(secret="s", header=header, body=body, now=1_000_000 + 600)


def test_a_failing_receiver_is_retried_with_back_off_until_it_answers(clock, receiver, django_capture_on_commit_callbacks):
    receiver.status = 500
    WebhookEndpoint.objects.create(url=receiver.url)
    acme = ProjectFactory(slug="acme")
    emit(acme, django_capture_on_commit_callbacks)

    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.response_code) == ("retrying", 1, 500)
    assert "HTTP 500" in delivery.last_error
    first_wait = delivery.next_attempt_at - NOW
    assert timedelta(seconds=29) <= first_wait <= timedelta(seconds=31)

    assert webhook_deliveries_due() == 0  # not due yet
    clock.move_to(delivery.next_attempt_at + timedelta(seconds=1))
    assert webhook_deliveries_due() == 1
    delivery.refresh_from_db()
    assert delivery.attempts == 2 and delivery.status == "retrying"
    assert timedelta(seconds=59) <= delivery.next_attempt_at - (NOW + first_wait) <= timedelta(seconds=63)

    receiver.status = 204
    clock.move_to(delivery.next_attempt_at + timedelta(seconds=1))
    webhook_deliveries_due()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_code, delivery.last_error) == ("delivered", 3, 204, "")
    event_ids = {json.loads(body)["id"] for _, body in receiver.requests}
    assert len(receiver.requests) == 3 and len(event_ids) == 1  # the same event, so receivers can drop repeats


def test_delivery_gives_up_after_the_last_attempt_and_staff_can_redeliver(clock, receiver, settings,
                                                                         django_capture_on_commit_callbacks):
    settings.OUTBOUND_WEBHOOK_MAX_ATTEMPTS = 2
    receiver.status = 503
    WebhookEndpoint.objects.create(url=receiver.url)
    emit(ProjectFactory(slug="acme"), django_capture_on_commit_callbacks)
    delivery = WebhookDelivery.objects.get()
    clock.move_to(delivery.next_attempt_at + timedelta(seconds=1))
    webhook_deliveries_due()
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.next_attempt_at) == ("failed", 2, None)

    receiver.status = 200
    with django_capture_on_commit_callbacks(execute=True):
        webhook_deliveries_redeliver(delivery_ids=[delivery.id])
    delivery.refresh_from_db()
    assert delivery.status == "delivered"


def test_an_unreachable_endpoint_is_logged_and_retried(clock, django_capture_on_commit_callbacks):
    from .receiver import Receiver

    closed = Receiver()
    closed.stop()  # nothing listens on that port any more
    WebhookEndpoint.objects.create(url=closed.url)
    emit(ProjectFactory(slug="acme"), django_capture_on_commit_callbacks)
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == "retrying" and delivery.response_code is None
    assert "ConnectionError" in delivery.last_error


def test_endpoints_get_only_their_project_and_event_types(clock, receiver, django_capture_on_commit_callbacks):
    acme, beta = ProjectFactory(slug="acme"), ProjectFactory(slug="beta")
    WebhookEndpoint.objects.create(url=receiver.url, project=beta)
    WebhookEndpoint.objects.create(url=receiver.url, event_types=["project.suspended"])
    WebhookEndpoint.objects.create(url=receiver.url, enabled=False)
    emit(acme, django_capture_on_commit_callbacks, "project.grace")
    assert WebhookDelivery.objects.count() == 0
    emit(acme, django_capture_on_commit_callbacks, "project.suspended")
    emit(beta, django_capture_on_commit_callbacks, "project.grace")
    assert sorted(receiver.events()) == ["project.grace", "project.suspended"]


def test_nothing_is_sent_when_the_transition_rolls_back(clock, receiver):
    from django.db import transaction

    WebhookEndpoint.objects.create(url=receiver.url)
    acme = ProjectFactory(slug="acme")
    with pytest.raises(RuntimeError), transaction.atomic():
        webhook_event_emit(project=acme, event_type="project.grace", data={})
        raise RuntimeError
    assert WebhookDelivery.objects.count() == 0 and receiver.requests == []


def test_one_delivery_that_breaks_does_not_hold_back_the_others(clock, receiver, monkeypatch,
                                                               django_capture_on_commit_callbacks):
    import requests

    broken = WebhookEndpoint.objects.create(url="http://127.0.0.1:9/broken")
    WebhookEndpoint.objects.create(url=receiver.url)
    receiver.status = 500
    emit(ProjectFactory(slug="acme"), django_capture_on_commit_callbacks)
    receiver.status = 204
    real_post = requests.post

    def post(url, **kwargs):
        if url == broken.url:
            raise ValueError("not an HTTP error: a bug in a header")
        return real_post(url, **kwargs)

    monkeypatch.setattr(requests, "post", post)
    clock.move_to(NOW + timedelta(minutes=5))
    assert webhook_deliveries_due() == 2
    by_endpoint = {d.endpoint_id: d for d in WebhookDelivery.objects.all()}
    assert by_endpoint[broken.id].status == "retrying" and "ValueError" in by_endpoint[broken.id].last_error
    assert [d.status for i, d in by_endpoint.items() if i != broken.id] == ["delivered"]
