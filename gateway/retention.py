"""Purging gateway charge rows past GATEWAY_CHARGE_RETENTION, when staff set one, so the table need not
grow by one row per metered call for ever. Unset, nothing is purged: a statement splits gateway charges
by resource type through these rows, so a purged month's statement shows them as one line.

A row is the claim on (project, request id) and a record for staff; the money is its ledger transfer,
which names the row only in text (reference "gateway:{id}", idempotency key "v1:gateway:{id}") and is
never touched here. Nothing has a foreign key to a charge row.

Two rules keep the purge from weakening what the rows guarantee:
- Only rows older than the retention go, and the retention is never below IDEMPOTENCY_KEY_TTL (settings),
  so a request replayed inside that window still finds its claim and is charged nothing.
- The row with the highest id always stays. Charge ids must never be used again (a new charge reusing
  one would collide with an old transfer's idempotency key), and an import (ledger_io) moves the id
  sequence past the highest id it loads: with the table emptied it would start again at 1.
"""

import logging
from datetime import datetime

from django.conf import settings
from django.db.models import Max
from django.utils import timezone

from .models import GatewayCharge

log = logging.getLogger(__name__)

# Rows deleted per statement: each batch is its own short statement in autocommit, so no run holds
# row locks (PostgreSQL) or SQLite's write lock for long, and authorize calls go on between batches.
PURGE_BATCH_SIZE = 1000
# Batches per run (a million rows at the default size): a backlog is worked off over hourly runs.
PURGE_MAX_BATCHES = 1000


def gateway_charges_purge(*, now: datetime | None = None, batch_size: int = PURGE_BATCH_SIZE,
                          max_batches: int = PURGE_MAX_BATCHES) -> int:
    """Delete gateway charges created more than GATEWAY_CHARGE_RETENTION ago, oldest first, in batches of
    batch_size; returns how many were deleted. Safe to run any number of times, and beside authorize."""
    if batch_size < 1 or max_batches < 1:
        raise ValueError("batch_size and max_batches must be at least 1")
    retention = settings.GATEWAY_CHARGE_RETENTION
    if retention is None:  # the default: rows are kept (statements read the resource type through them)
        return 0
    assert retention >= settings.IDEMPOTENCY_KEY_TTL  # held by settings.py
    cutoff = (now or timezone.now()) - retention
    newest = GatewayCharge.objects.aggregate(newest=Max("id"))["newest"]
    if newest is None:
        return 0
    deleted = 0
    after = 0
    for _ in range(max_batches):
        # Walk the primary key from the oldest id: created_at has no index (it would cost every authorize
        # an index write), and ids grow with created_at, so each batch reads batch_size rows of the index.
        rows = list(GatewayCharge.objects.filter(id__gt=after, id__lt=newest).order_by("id")
                    .values_list("id", "created_at")[:batch_size])
        if not rows:
            break
        old = [row_id for row_id, created_at in rows if created_at < cutoff]
        if old:
            # The cutoff again in the DELETE: the statement itself never removes a row inside the window.
            deleted += GatewayCharge.objects.filter(id__in=old, created_at__lt=cutoff).delete()[0]
        after, last_created_at = rows[-1]
        # Past the cutoff: every later id is newer (but for a few out-of-order rows, left to the next run).
        if last_created_at >= cutoff:
            break
    if deleted:
        log.info("purged %d gateway charge(s) created before %s", deleted, cutoff.isoformat())
    return deleted
