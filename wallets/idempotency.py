"""Idempotency-Key handling for retried writes (the IETF httpapi Idempotency-Key draft).

A key is claimed in its own short transaction, so a retry that arrives while the first request is
still running sees the claim and gets 409. The effect and the stored answer then commit together
in one transaction: either both exist or neither does. A request that fails with a 4xx/5xx gives
its key back, because it wrote nothing.
"""

import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.response import Response

from creditservice.lib.errors import ApiError, Conflict, ValidationFailed

from .access import caller_actor
from .models import IdempotencyRecord

HEADER = "Idempotency-Key"
_TABLE = IdempotencyRecord._meta.db_table


class KeyReused(ApiError):
    status_code = 422
    code = "idempotency_key_reused"


def fingerprint(request: Request, body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{request.method} {request.path}\n{canonical}".encode()).hexdigest()


def require_key(request: Request) -> str:
    key = request.headers.get(HEADER, "").strip()
    if not key:
        raise ValidationFailed({HEADER: ["this header is required for this request"]})
    if len(key) > 255:
        raise ValidationFailed({HEADER: ["at most 255 characters"]})
    return key


def _claim(scope: str, key: str, print_: str, now: datetime) -> int | None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {_TABLE} (scope, key, fingerprint, status, locked_at, created_at) "
            "VALUES (%s, %s, %s, 'in_progress', %s, %s) ON CONFLICT (scope, key) DO NOTHING RETURNING id",
            [scope, key, print_, now, now],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def _take_over(record_id: int, seen_locked_at: datetime, now: datetime) -> bool:
    """Compare-and-set on locked_at: only one of several retries may take an abandoned or expired key."""
    return bool(
        IdempotencyRecord.objects.filter(id=record_id, locked_at=seen_locked_at).update(
            locked_at=now, status=IdempotencyRecord.Status.IN_PROGRESS, created_at=now,
        )
    )


def run(request: Request, body: Any, operation: Callable[[str], tuple[int, dict]]) -> Response:
    """Run operation() at most once per (caller, Idempotency-Key); replay its answer afterwards.

    operation(effect_key) runs inside a transaction and returns (status, json body); it raises ApiError
    to refuse. effect_key is unique to this claim of the key: use it as the ledger idempotency key so the
    effect itself is also exactly-once, and a key reused after it expired is a new effect.
    """
    key = require_key(request)
    scope = caller_actor(request)
    print_ = fingerprint(request, body)
    now = timezone.now()
    record_id = _claim(scope, key, print_, now)
    if record_id is None:
        existing = IdempotencyRecord.objects.get(scope=scope, key=key)
        expired = existing.created_at < now - settings.IDEMPOTENCY_KEY_TTL
        if not expired and existing.fingerprint != print_:
            raise KeyReused("this Idempotency-Key was used with another request body")
        if not expired and existing.status == IdempotencyRecord.Status.COMPLETED:
            response = Response(existing.response_body, status=existing.response_status)
            response["Idempotent-Replayed"] = "true"
            return response
        stale = existing.locked_at < now - settings.IDEMPOTENCY_LOCK_TIMEOUT
        if not (expired or stale) or not _take_over(existing.id, existing.locked_at, now):
            raise Conflict("a request with this Idempotency-Key is still in progress", code="idempotency_in_progress")
        if expired:
            IdempotencyRecord.objects.filter(id=existing.id).update(fingerprint=print_)
        record_id = existing.id
    try:
        with transaction.atomic():
            status, response_body = operation(f"v1:idem:{record_id}:{now.timestamp():.6f}")
            IdempotencyRecord.objects.filter(id=record_id).update(
                status=IdempotencyRecord.Status.COMPLETED, response_status=status, response_body=response_body,
            )
    except BaseException:
        # Nothing was written, so the key goes back: the client may retry once it has fixed the cause.
        IdempotencyRecord.objects.filter(id=record_id, status=IdempotencyRecord.Status.IN_PROGRESS).delete()
        raise
    return Response(response_body, status=status)


def purge_expired() -> int:
    cutoff = timezone.now() - settings.IDEMPOTENCY_KEY_TTL
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
