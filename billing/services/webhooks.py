"""Outbound webhooks: lifecycle events to platform services, signed, retried with back-off.

Signature: header `Creditservice-Signature: t=<unix seconds>,v1=<hex>` where
hex = HMAC-SHA256(endpoint secret, f"{t}.{raw body}"). Receivers recompute it over the raw body,
compare in constant time and refuse old timestamps (e.g. older than 5 minutes) against replays.
"""

import hashlib
import hmac
import json
import logging
import time
import uuid
from collections.abc import Iterable
from datetime import timedelta

import requests
from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from creditservice.lib.enqueue import enqueue
from creditservice.lib.metrics import OUTBOUND_WEBHOOK_DELIVERIES
from wallets.models import Project

from ..models import WebhookDelivery, WebhookEndpoint

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "Creditservice-Signature"


def sign(*, secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(*, secret: str, header: str, body: bytes, tolerance_seconds: int = 300, now: int | None = None) -> bool:
    """What a receiver does (used by our tests; documented for platform services)."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (ValueError, KeyError):
        return False
    if abs((now if now is not None else int(time.time())) - timestamp) > tolerance_seconds:
        return False
    expected = sign(secret=secret, timestamp=timestamp, body=body).split("v1=", 1)[1]
    return hmac.compare_digest(expected, parts.get("v1", ""))


def body_bytes(payload: dict) -> bytes:
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def webhook_event_emit(*, project: Project, event_type: str, data: dict) -> list[int]:
    """Queue the event for every enabled endpoint that wants it, as delivery rows written in the caller's
    transaction (the outbox: the event exists exactly when the change that caused it commits). After the
    commit a worker is nudged to send them; with the broker down the minute sweep sends them instead."""
    endpoints = WebhookEndpoint.objects.filter(enabled=True).filter(Q(project__isnull=True) | Q(project_id=project.id))
    event_id = f"evt_{uuid.uuid4().hex}"
    now = timezone.now()
    payload = {
        "id": event_id, "type": event_type, "created_at": now.isoformat().replace("+00:00", "Z"),
        "data": {"project": project.slug, **data},
    }
    deliveries = [
        WebhookDelivery(endpoint=endpoint, event_id=event_id, event_type=event_type, payload=payload, next_attempt_at=now)
        for endpoint in endpoints if endpoint.wants(event_type)
    ]
    created = WebhookDelivery.objects.bulk_create(deliveries)
    ids = [delivery.id for delivery in created]
    if ids:
        transaction.on_commit(lambda: _enqueue(ids))
    return ids


def _enqueue(delivery_ids: Iterable[int]) -> None:
    """Nudge a worker to send these now. The committed delivery rows are the outbox: whatever is not
    enqueued (the broker is down) is sent by the every-minute sweep, webhook_deliveries_due."""
    from ..tasks import webhook_delivery_attempt

    for delivery_id in delivery_ids:
        if not enqueue(webhook_delivery_attempt, delivery_id):
            # The broker is down: each further publish would wait out the same timeout in the request.
            break


def backoff(attempts: int) -> timedelta:
    return timedelta(seconds=settings.OUTBOUND_WEBHOOK_BACKOFF_SECONDS * 2 ** max(attempts - 1, 0))


# A delivery's status after an attempt → the attempt's result in OUTBOUND_WEBHOOK_DELIVERIES.
_ATTEMPT_RESULT = {
    WebhookDelivery.Status.DELIVERED: "delivered",
    WebhookDelivery.Status.RETRYING: "failed",  # retried after the back-off
    WebhookDelivery.Status.FAILED: "gave_up",  # OUTBOUND_WEBHOOK_MAX_ATTEMPTS reached
}


def webhook_delivery_attempt(*, delivery_id: int) -> WebhookDelivery | None:
    """Send one due delivery once. Claimed by compare-and-set so a task and the sweep never both send."""
    now = timezone.now()
    lease = now + timedelta(seconds=settings.OUTBOUND_WEBHOOK_TIMEOUT_SECONDS * 2 + 30)
    claimed = WebhookDelivery.objects.filter(
        id=delivery_id, status__in=[WebhookDelivery.Status.PENDING, WebhookDelivery.Status.RETRYING],
        next_attempt_at__lte=now,
    ).update(next_attempt_at=lease, attempts=F("attempts") + 1)
    if not claimed:
        return None
    delivery = WebhookDelivery.objects.select_related("endpoint").get(id=delivery_id)
    endpoint = delivery.endpoint
    secret = endpoint.secret or settings.OUTBOUND_WEBHOOK_SECRET
    code, error = None, ""
    if not endpoint.enabled:
        error = "endpoint disabled"
    elif not secret:
        error = "no signing secret: set one on the endpoint or OUTBOUND_WEBHOOK_SECRET"
    else:
        body = body_bytes(delivery.payload)
        headers = {
            "Content-Type": "application/json", "User-Agent": "creditservice-webhooks/1",
            SIGNATURE_HEADER: sign(secret=secret, timestamp=int(time.time()), body=body),
            "Creditservice-Event": delivery.event_type, "Creditservice-Delivery": str(delivery.id),
        }
        try:
            response = requests.post(endpoint.url, data=body, headers=headers,
                                     timeout=settings.OUTBOUND_WEBHOOK_TIMEOUT_SECONDS, allow_redirects=False)
            code = response.status_code
            if not 200 <= code < 300:
                error = f"HTTP {code}: {response.text[:300]}"
        except Exception as exc:  # not only RequestException: a bad URL or header must be this delivery's error
            error = f"{type(exc).__name__}: {exc}"[:1000]
    delivery.response_code = code
    delivery.last_error = error
    if not error:
        delivery.status = WebhookDelivery.Status.DELIVERED
        delivery.delivered_at = timezone.now()
        delivery.next_attempt_at = None
    elif delivery.attempts >= settings.OUTBOUND_WEBHOOK_MAX_ATTEMPTS:
        delivery.status = WebhookDelivery.Status.FAILED
        delivery.next_attempt_at = None
    else:
        delivery.status = WebhookDelivery.Status.RETRYING
        delivery.next_attempt_at = timezone.now() + backoff(delivery.attempts)
    delivery.save(update_fields=["response_code", "last_error", "status", "delivered_at", "next_attempt_at"])
    OUTBOUND_WEBHOOK_DELIVERIES.labels(result=_ATTEMPT_RESULT[delivery.status]).inc()
    if delivery.status == WebhookDelivery.Status.RETRYING and not settings.CELERY_TASK_ALWAYS_EAGER:
        from ..tasks import webhook_delivery_attempt as task

        enqueue(task, delivery.id, eta=delivery.next_attempt_at)  # not taken: the sweep retries it when due
    return delivery


def webhook_deliveries_due(*, limit: int = 500) -> list[int]:
    """Ids of deliveries whose next attempt is due: the outbox sweep, for deliveries whose task the broker
    never took (down at the time) or lost. Sending is claimed per delivery, so a task and a sweep at
    once still send each delivery once."""
    return list(
        WebhookDelivery.objects.filter(
            status__in=[WebhookDelivery.Status.PENDING, WebhookDelivery.Status.RETRYING],
            next_attempt_at__lte=timezone.now(),
        ).order_by("next_attempt_at").values_list("id", flat=True)[:limit]
    )


def webhook_deliveries_redeliver(*, delivery_ids: Iterable[int]) -> int:
    """Staff action: send these again now (a delivered one is sent once more, same event id)."""
    ids = list(delivery_ids)
    with transaction.atomic():
        count = WebhookDelivery.objects.filter(id__in=ids).update(
            status=WebhookDelivery.Status.PENDING, next_attempt_at=timezone.now(), attempts=0)
        transaction.on_commit(lambda: _enqueue(ids))
    return count
