"""A grant's unspent rest leaves the wallet once: at expires_at (wallet → expired, kind grant_expiry, by
the beat task) or when staff void it (wallet → voided, kind grant_void, with actor and reason).

Lock, re-check, write: the wallet row first (the only lock every grant change happens under), then the
grant is re-read; a grant already closed is a quiet no-op (its expiry or void is done), and the
transfer's idempotency key (v1:grant:{id}:expiry / :void) makes a repeat move nothing twice.
"""

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from creditservice.lib.errors import Conflict

from ..models import Account, Grant, Transfer
from . import transfer

EXPIRY_BATCH = 500  # grants one run of the expiry task closes at most; the next run takes the rest


def _close(*, grant_id: int, closed_as: str, now: datetime, reason: str, actor: str) -> Grant | None:
    """Move the grant's rest out and close it; None when it was closed already (nothing done)."""
    with transaction.atomic():
        wallet_id = Grant.objects.values_list("wallet_id", flat=True).get(id=grant_id)
        project_id = (Account.objects.select_for_update().filter(id=wallet_id)
                      .values_list("project_id", flat=True).get())
        grant = Grant.objects.get(id=grant_id)
        if grant.closed_at is not None:
            return None
        due = grant.expires_at is not None and grant.expires_at <= now
        # An expiry only once due; a void never of a grant already expired for every reader (the task
        # moves its rest as an expiry).
        if due != (closed_as == "expired"):
            return None
        record = None
        if grant.remaining > 0:
            code, kind = ((Account.System.EXPIRED, Transfer.Kind.GRANT_EXPIRY) if closed_as == "expired"
                          else (Account.System.VOIDED, Transfer.Kind.GRANT_VOID))
            record, _ = transfer(
                project=project_id, direction="out", system_code=code, amount=grant.remaining, kind=kind,
                idempotency_key=f"v1:grant:{grant.id}:{'expiry' if closed_as == 'expired' else 'void'}",
                reason=reason, reference=f"grant:{grant.id}", actor=actor, draw_grant_id=grant.id,
                metadata={"grant": grant.id, "category": grant.category})
        grant.refresh_from_db(fields=["remaining"])
        grant.closed_at, grant.closed_as, grant.closing_transfer = now, closed_as, record
        grant.close_reason, grant.closed_by = reason[:500], actor[:100]
        grant.save(update_fields=["closed_at", "closed_as", "closing_transfer", "close_reason", "closed_by"])
        return grant


def grant_expire(*, grant_id: int, now: datetime | None = None) -> Grant | None:
    """Expire the unspent rest of a grant past its expires_at; None when not due or done already."""
    now = now or timezone.now()
    return _close(grant_id=grant_id, closed_as="expired", now=now, reason="grant expired", actor="system")


def grant_void(*, grant_id: int, reason: str, actor: str) -> Grant:
    """Void the unspent rest of a grant (a reversing transfer). Voiding a voided grant returns it as it
    is; an expired one cannot be voided (409)."""
    grant = _close(grant_id=grant_id, closed_as="voided", now=timezone.now(), reason=reason, actor=actor)
    if grant is not None:
        return grant
    grant = Grant.objects.get(id=grant_id)
    if grant.closed_as == "voided":
        return grant
    raise Conflict("this grant has expired: it has nothing left to void", code="grant_closed")


def grants_expire_due(*, now: datetime | None = None, limit: int = EXPIRY_BATCH) -> int:
    """Expire the grants past expires_at that still hold something, at most `limit`; how many it closed.
    Safe to run twice (and concurrently): each grant is closed once, under its wallet's lock."""
    now = now or timezone.now()
    due = list(Grant.objects.filter(remaining__gt=0, expires_at__isnull=False, expires_at__lte=now,
                                    closed_at__isnull=True).order_by("expires_at", "id").values_list("id", flat=True)[:limit])
    return sum(1 for grant_id in due if grant_expire(grant_id=grant_id, now=now) is not None)
