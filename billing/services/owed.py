"""Owed billing: what a run could not charge is kept as OwedCharge rows until it is charged.

A run attempt records its failures here when it finishes: a failed chunk owes its range of projects,
a project that failed (a write error, a missing price) owes itself. A chunk with more failing
projects than OWED_PROJECTS_PER_CHUNK owes its range as one row, so a price missing for a whole
resource type is one row per chunk and its retry stays set-based. The billing beat retries due rows
(runs.billing_owed_retry); a row is settled when a retry, or a later attempt of its run whose scope
covers it, charges it without a failure. A run is `partial` exactly while it has an owed row.
"""

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q

from ..models import BillingChunk, BillingRun, OwedCharge

# More failing projects than this in one chunk: the chunk's range is owed as one row (one set-based retry).
OWED_PROJECTS_PER_CHUNK = 20
# Failures kept on a row: enough to diagnose, bounded so a mass failure cannot bloat it.
MAX_FAILURES_KEPT = 50
# Rows written or settled per statement (SQLite's limit on variables, and short statements).
_BATCH = 500

Status = OwedCharge.Status


@dataclass
class Owed:
    """What one attempt failed to charge: one project (first == last) or a range of them, and why."""

    first_project_id: int
    last_project_id: int
    error: str
    failures: list[dict] = field(default_factory=list)


def retry_delay(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failed attempt: FIRST, doubling, at most MAX; MAX from the cap on."""
    first, most = settings.BILLING_RETRY_FIRST_SECONDS, settings.BILLING_RETRY_MAX_SECONDS
    if attempts >= settings.BILLING_RETRY_ATTEMPTS_CAP:
        return timedelta(seconds=most)
    return timedelta(seconds=min(first * 2 ** max(attempts - 1, 0), most))


def owed_from_failures(*, first_project_id: int, last_project_id: int, failures: list[dict]) -> list[Owed]:
    """Failures of a chunk (or of a range's retry) → one row per failing project, or the range as one row."""
    by_project: dict[int, list[dict]] = defaultdict(list)
    for failure in failures:
        by_project[failure["project_id"]].append(failure)
    if len(by_project) > OWED_PROJECTS_PER_CHUNK:
        error = f"{len(by_project)} projects could not be charged, e.g. {failures[0]['reason']}"
        return [Owed(first_project_id, last_project_id, error, failures[:MAX_FAILURES_KEPT])]
    return [Owed(project_id, project_id, "; ".join(sorted({f["reason"] for f in items})), items[:MAX_FAILURES_KEPT])
            for project_id, items in sorted(by_project.items())]


def owed_from_chunks(chunks: Iterable[BillingChunk]) -> list[Owed]:
    """What a finished run attempt owes: its failed chunks' ranges and its chunks' failing projects."""
    owed: list[Owed] = []
    for chunk in chunks:
        if chunk.status == BillingChunk.Status.FAILED:
            owed.append(Owed(chunk.first_project_id, chunk.last_project_id, chunk.error or "the chunk failed"))
        elif chunk.failures:
            owed += owed_from_failures(first_project_id=chunk.first_project_id, last_project_id=chunk.last_project_id,
                                       failures=chunk.failures)
    return owed


def _earliest(a: datetime | None, b: datetime | None) -> datetime | None:
    # None is the narrowest scope (no earlier window at all): the other one covers it.
    return min(a, b) if a is not None and b is not None else a or b


def owed_charges_record(*, run: BillingRun, owed: list[Owed], late_usage_since: datetime | None, now: datetime,
                        attempts_before: int = 0) -> None:
    """Owe each item: a new row, or one more failed attempt on the row that already owes that range.

    attempts_before: failed attempts a new row inherits (a range's retry split into projects keeps
    its back-off going). The caller holds a transaction.
    """
    if not owed:
        return
    existing = {(row.first_project_id, row.last_project_id): row for row in OwedCharge.objects.filter(
        run=run, first_project_id__in={item.first_project_id for item in owed})}
    new, changed = [], []
    for item in owed:
        row = existing.get((item.first_project_id, item.last_project_id))
        if row is None:
            single = item.first_project_id == item.last_project_id
            row = OwedCharge(run=run, first_project_id=item.first_project_id, last_project_id=item.last_project_id,
                             project_id=item.first_project_id if single else None, late_usage_since=late_usage_since,
                             attempts=attempts_before)
            new.append(row)
        else:
            row.late_usage_since = _earliest(row.late_usage_since, late_usage_since)
            changed.append(row)
        row.status, row.settled_at = Status.OWED, None
        row.attempts += 1
        row.last_attempt_at, row.next_retry_at = now, now + retry_delay(row.attempts)
        row.last_error, row.failures = item.error[:4000], item.failures
    OwedCharge.objects.bulk_create(new, batch_size=_BATCH)
    OwedCharge.objects.bulk_update(changed, ["status", "settled_at", "attempts", "last_attempt_at", "next_retry_at",
                                             "last_error", "failures", "late_usage_since"], batch_size=_BATCH)


def owed_charges_settle_covered(*, run: BillingRun, late_usage_since: datetime | None, owed: list[Owed],
                                now: datetime) -> int:
    """Settle the run's owed rows that a finished attempt of the run charged without a failure.

    Covered: no failure of the attempt touches the row's projects, and the attempt's scope of late
    usage is at least as wide as the row's. A project of the row that was in none of the attempt's
    chunks had no usage in that scope, so nothing of it is owed either.
    """
    failed = sorted((item.first_project_id, item.last_project_id) for item in owed)  # disjoint ranges
    firsts = [first for first, _ in failed]
    settled = []
    for row_id, first, last, since in OwedCharge.objects.filter(run=run, status=Status.OWED).values_list(
            "id", "first_project_id", "last_project_id", "late_usage_since"):
        if since is not None and (late_usage_since is None or late_usage_since > since):
            continue  # this attempt looked at less late usage than the row owes
        before = bisect_right(firsts, last)
        if before and failed[before - 1][1] >= first:
            continue  # failed again in this attempt: owed_charges_record counts it
        settled.append(row_id)
    count = 0
    for start in range(0, len(settled), _BATCH):
        count += OwedCharge.objects.filter(id__in=settled[start:start + _BATCH], status=Status.OWED).update(
            status=Status.CHARGED, settled_at=now, next_retry_at=None)
    return count


def owed_charges_due(*, now: datetime, limit: int) -> list[int]:
    """Ids of owed rows whose retry time has come, the longest waiting first."""
    return list(OwedCharge.objects.filter(status=Status.OWED, next_retry_at__lte=now)
                .order_by("next_retry_at", "id").values_list("id", flat=True)[:limit])


def owed_charge_claim(*, owed_id: int, now: datetime, force: bool = False) -> OwedCharge | None:
    """Take one owed row for a retry by compare-and-set; None if it is not due (or no longer owed).

    The claim moves next_retry_at a lease ahead: a retry that dies is taken up again after the lease.
    force: staff's "retry now", which does not wait for the back-off.
    """
    due = Q(status=Status.OWED) if force else Q(status=Status.OWED, next_retry_at__lte=now)
    lease = timedelta(seconds=settings.BILLING_RUN_LEASE_SECONDS)
    if not OwedCharge.objects.filter(due, id=owed_id).update(next_retry_at=now + lease, last_attempt_at=now):
        return None
    row = OwedCharge.objects.select_related("run").get(id=owed_id)
    # The run's heartbeat tells the lifecycle sweep to look at its charged projects, should the retry
    # die between its charges and their lifecycle step (a running run's lease is left to its workers).
    BillingRun.objects.filter(id=row.run_id).exclude(status=BillingRun.Status.RUNNING).update(heartbeat_at=now)
    return row


def owed_charge_record_retry(*, row: OwedCharge, charges: int, credits: int, failures: list[dict], error: str,
                             now: datetime) -> OwedCharge:
    """Record a retry: charged (settled), still owed (back-off), or a range split into its failing projects.

    error: the retry raised. The row's status changes only if nobody settled or retried it meanwhile
    (compare-and-set on its attempts); what the retry charged is counted either way.
    """
    if error:
        outcome = [Owed(row.first_project_id, row.last_project_id, error)]
    else:
        outcome = owed_from_failures(first_project_id=row.first_project_id, last_project_id=row.last_project_id,
                                     failures=failures)
    same_range = len(outcome) == 1 and (outcome[0].first_project_id, outcome[0].last_project_id) == (
        row.first_project_id, row.last_project_id)
    if not outcome:
        change = {"status": Status.CHARGED, "settled_at": now, "next_retry_at": None, "last_error": "", "failures": []}
    elif same_range:
        attempts = row.attempts + 1
        change = {"attempts": attempts, "next_retry_at": now + retry_delay(attempts), "last_error": outcome[0].error[:4000],
                  "failures": outcome[0].failures}
    else:
        change = {"status": Status.SPLIT, "settled_at": now, "next_retry_at": None, "failures": [],
                  "last_error": f"charged but for {len(outcome)} projects, which are owed one by one"}
    with transaction.atomic():
        OwedCharge.objects.filter(id=row.id).update(charges_created=F("charges_created") + charges,
                                                    credits_charged=F("credits_charged") + credits)
        # A running run's totals are summed again when it finishes (this row's counts included).
        BillingRun.objects.filter(id=row.run_id).exclude(status=BillingRun.Status.RUNNING).update(
            charges_created=F("charges_created") + charges, credits_charged=F("credits_charged") + credits)
        if OwedCharge.objects.filter(id=row.id, status=Status.OWED, attempts=row.attempts).update(**change):
            if outcome and not same_range:
                owed_charges_record(run=row.run, owed=outcome, late_usage_since=row.late_usage_since, now=now,
                                    attempts_before=row.attempts)
        billing_runs_settle(run_ids=[row.run_id])
    row.refresh_from_db()
    return row


def billing_runs_settle(*, run_ids: Iterable[int] | None = None) -> int:
    """A finished run is partial exactly while it owes something: settle the runs (all, or these) to match.

    Retries call it for their run; the beat calls it for all, a safety net for two settles that raced.
    """
    owing = OwedCharge.objects.filter(status=Status.OWED).values("run_id")
    runs = BillingRun.objects.all() if run_ids is None else BillingRun.objects.filter(id__in=list(run_ids))
    succeeded = runs.filter(status=BillingRun.Status.PARTIAL).exclude(id__in=owing).update(
        status=BillingRun.Status.SUCCEEDED)
    reopened = runs.filter(status=BillingRun.Status.SUCCEEDED, id__in=owing).update(status=BillingRun.Status.PARTIAL)
    return succeeded + reopened
