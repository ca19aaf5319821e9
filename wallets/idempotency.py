"""Idempotency-Key handling for retried writes (the IETF httpapi Idempotency-Key draft).

One key, one effect, whatever the timing:

- A key is claimed in its own short transaction, so a retry that arrives while the first request is
  still running sees the claim and gets 409.
- The claim has a generation: the instant the key was (re)claimed fresh. It changes only when the key
  expired (IDEMPOTENCY_KEY_TTL) or was given back, never when a retry takes over a claim that looked
  abandoned (older than IDEMPOTENCY_LOCK_TIMEOUT) but may still be running. The effect key handed to the
  operation is built from the record and that generation, so both attempts of one claim carry the same
  ledger key / Stripe Idempotency-Key and the effect happens once.
- run(): the effect and the stored answer commit together in one transaction, and the answer is stored
  only by the attempt that still holds the claim (compare-and-set on locked_at); an attempt whose claim
  was taken over rolls its effect back and answers as the other did. A request refused (4xx/5xx) wrote
  nothing and gives its key back.
- run_outbound(): for operations that call another service (Stripe). They must not run inside a
  transaction, so the operation commits its own write-ahead row and the answer is stored after it. A
  failure keeps the claim, released, so the next retry of the same request resumes the same effect.
"""

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from rest_framework.request import Request
from rest_framework.response import Response

from creditservice.lib.errors import ApiError, Conflict, ValidationFailed
from creditservice.lib.queries import db_datetime
from creditservice.lib.retry import retry_transaction
from creditservice.lib.text import TextError, clean_text

from .access import caller_actor
from .models import IdempotencyRecord

HEADER = "Idempotency-Key"
_TABLE = IdempotencyRecord._meta.db_table
_STATUS = IdempotencyRecord.Status
# locked_at of a claim given back by a failed outbound operation: stale at once, so the next retry takes it
# over without waiting for the lock timeout; kept (not deleted) so that retry reuses the effect key.
RELEASED = datetime(2000, 1, 1, tzinfo=UTC)
# A claim that vanished between our insert and our read (its request failed and gave it back) is tried again.
_CLAIM_ATTEMPTS = 3

Operation = Callable[[str], tuple[int, dict]]


class KeyReused(ApiError):
    status_code = 422
    code = "idempotency_key_reused"


class _Superseded(Exception):
    """Our claim was taken over while the operation ran: roll our effect back, the other attempt owns it."""


@dataclass(frozen=True)
class Claim:
    record_id: int
    locked_at: datetime  # this attempt's token: the claim is ours while the row still carries it
    generation: datetime  # the record's created_at: the same for every attempt of one claim

    @property
    def effect_key(self) -> str:
        return f"v1:idem:{self.record_id}:{self.generation.timestamp():.6f}"


def fingerprint(request: Request, body: Any) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{request.method} {request.path}\n{canonical}".encode()).hexdigest()


def require_key(request: Request) -> str:
    key = request.headers.get(HEADER, "").strip()
    if not key:
        raise ValidationFailed({HEADER: ["this header is required for this request"]})
    try:
        # The key is stored (IdempotencyRecord.key, Reservation.idempotency_key: 255 characters).
        return clean_text(key, max_length=255)
    except TextError as exc:
        raise ValidationFailed({HEADER: [str(exc)]}) from None


def _insert_claim(scope: str, key: str, print_: str, now: datetime) -> int | None:
    # Raw SQL for ON CONFLICT DO NOTHING; the datetimes go in as the ORM writes them, or the ORM's
    # compare-and-set on locked_at below would never match them on SQLite.
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {_TABLE} (scope, key, fingerprint, status, locked_at, created_at) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (scope, key) DO NOTHING RETURNING id",
            [scope, key, print_, _STATUS.IN_PROGRESS, db_datetime(now), db_datetime(now)],
        )
        row = cursor.fetchone()
    return row[0] if row else None


def _take_over(existing: IdempotencyRecord, now: datetime, *, fresh: bool, print_: str) -> bool:
    """Compare-and-set on (locked_at, status): one of several retries takes the key, and none takes a
    claim whose request completed meanwhile. A fresh claim starts a new generation (a new effect)."""
    changes: dict[str, Any] = {"locked_at": now, "status": _STATUS.IN_PROGRESS}
    if fresh:
        changes.update(created_at=now, fingerprint=print_, response_status=None, response_body=None)
    return bool(
        IdempotencyRecord.objects.filter(id=existing.id, locked_at=existing.locked_at, status=existing.status)
        .update(**changes)
    )


def _replay(record: IdempotencyRecord) -> Response:
    response = Response(record.response_body, status=record.response_status)
    response["Idempotent-Replayed"] = "true"
    return response


def _in_progress() -> Conflict:
    return Conflict("a request with this Idempotency-Key is still in progress", code="idempotency_in_progress")


def _acquire(scope: str, key: str, print_: str) -> Claim | Response:
    """Claim the key for this request, or the answer to give instead (a replay); raises 409 / 422."""
    for _ in range(_CLAIM_ATTEMPTS):
        now = timezone.now()
        record_id = _insert_claim(scope, key, print_, now)
        if record_id is not None:
            return Claim(record_id, locked_at=now, generation=now)
        existing = IdempotencyRecord.objects.filter(scope=scope, key=key).first()
        if existing is None:
            continue
        expired = existing.created_at < now - settings.IDEMPOTENCY_KEY_TTL
        released = existing.locked_at == RELEASED
        # A new request under an expired key, or another body after a failure gave the key back, is a
        # new effect; the same body after such a failure resumes the effect that may have begun.
        fresh = expired or (released and existing.fingerprint != print_)
        if not fresh and existing.fingerprint != print_:
            raise KeyReused("this Idempotency-Key was used with another request body")
        if not fresh and existing.status == _STATUS.COMPLETED:
            return _replay(existing)
        stale = existing.locked_at < now - settings.IDEMPOTENCY_LOCK_TIMEOUT
        if not (fresh or stale):
            raise _in_progress()
        if _take_over(existing, now, fresh=fresh, print_=print_):
            return Claim(existing.id, locked_at=now, generation=now if fresh else existing.created_at)
        # Another retry took it first, or its request just completed: answer from what it left.
        latest = IdempotencyRecord.objects.filter(id=existing.id).first()
        if latest is not None and latest.status == _STATUS.COMPLETED and latest.fingerprint == print_:
            return _replay(latest)
        raise _in_progress()
    raise _in_progress()


def _ours(claim: Claim):
    return IdempotencyRecord.objects.filter(id=claim.record_id, locked_at=claim.locked_at, status=_STATUS.IN_PROGRESS)


def _complete(claim: Claim, status: int, body: dict) -> bool:
    return bool(_ours(claim).update(status=_STATUS.COMPLETED, response_status=status, response_body=body))


def _answer_of_the_attempt_that_took_over(claim: Claim) -> Response:
    record = IdempotencyRecord.objects.filter(id=claim.record_id).first()
    if record is not None and record.status == _STATUS.COMPLETED:
        return _replay(record)
    raise _in_progress()


def run(request: Request, body: Any, operation: Operation) -> Response:
    """Run operation() at most once per (caller, Idempotency-Key); replay its answer afterwards.

    operation(effect_key) runs inside a transaction and returns (status, json body); it raises ApiError
    to refuse. effect_key is the same for every attempt of one claim: use it as the ledger idempotency key
    so the effect itself is also exactly-once; a key reused after it expired is a new effect.
    """
    key = require_key(request)
    claim = _acquire(caller_actor(request), key, fingerprint(request, body))
    if isinstance(claim, Response):
        return claim
    @retry_transaction  # a deadlock victim rolled back whole, answer included: run it again, claim kept
    def effect() -> tuple[int, dict]:
        with transaction.atomic():
            status, response_body = operation(claim.effect_key)
            if not _complete(claim, status, response_body):
                raise _Superseded
        return status, response_body

    try:
        status, response_body = effect()
    except _Superseded:
        return _answer_of_the_attempt_that_took_over(claim)
    except BaseException:
        # Nothing was written, so the key goes back (if it is still ours): the client may retry once it
        # has fixed the cause.
        _ours(claim).delete()
        raise
    return Response(response_body, status=status)


def run_outbound(request: Request, body: Any, operation: Operation) -> Response:
    """run() for an operation that calls another service: it runs outside any transaction.

    operation(effect_key) must commit a write-ahead row keyed by effect_key before its call, send the
    other service an idempotency key derived from that row, and record the answer after; so a second
    attempt with the same effect_key finds the row and resumes it instead of repeating the call's effect.
    A 4xx refusal wrote nothing and gives the key back; any other failure keeps the claim, released, for
    the retry of the same request to resume.
    """
    key = require_key(request)
    claim = _acquire(caller_actor(request), key, fingerprint(request, body))
    if isinstance(claim, Response):
        return claim
    try:
        status, response_body = operation(claim.effect_key)
    except ApiError as error:
        if error.status_code < 500:
            _ours(claim).delete()
        else:
            _ours(claim).update(locked_at=RELEASED)
        raise
    except BaseException:
        _ours(claim).update(locked_at=RELEASED)
        raise
    # A takeover ran the same effect under the same key meanwhile: our answer describes that effect too.
    _complete(claim, status, response_body)
    return Response(response_body, status=status)


def purge_expired() -> int:
    cutoff = timezone.now() - settings.IDEMPOTENCY_KEY_TTL
    deleted, _ = IdempotencyRecord.objects.filter(created_at__lt=cutoff).delete()
    return deleted
