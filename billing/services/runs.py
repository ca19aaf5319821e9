"""Billing runs: claim a window by compare-and-set, split it into chunks, let workers take them.

A run is one row per window. Claiming it is one conditional UPDATE (pending/finished → running, or
a running run whose heartbeat is older than the lease, i.e. a crashed worker), so two beats or two
workers never bill a window at once; the loser is told and leaves. Each claim is a new attempt with
its own chunks; a resumed attempt re-derives what is left from the charges already made.

What an attempt could not charge (a failed chunk, a failing project) is owed (owed.py) and retried
by the following beats until it is charged; a run is `partial` exactly while something is owed.
"""

import logging
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from creditservice.lib import metrics
from creditservice.lib.enqueue import enqueue
from creditservice.lib.money import MICROS_PER_CREDIT
from creditservice.lib.queries import fetch_rows
from metering import windows
from metering.models import UsageRecord

from ..models import BillingChunk, BillingRun, OwedCharge
from . import owed
from .charging import ChunkResult, charge_chunk
from .lifecycle import projects_enter_grace_if_unfunded

log = logging.getLogger(__name__)


def _worker_name() -> str:
    # Per claim, not at import: each forked Celery pool process has its own pid.
    return f"{socket.gethostname()}:{os.getpid()}"[:100]


Status = BillingRun.Status
ChunkStatus = BillingChunk.Status
# updated_at is the writer's transaction time and a writer commits a moment later: look back further.
LATE_USAGE_MARGIN = timedelta(minutes=10)


@dataclass
class RunOutcome:
    run: BillingRun
    claimed: bool
    message: str


def _lease() -> timedelta:
    return timedelta(seconds=settings.BILLING_RUN_LEASE_SECONDS)


def _late_usage_from(window_start: datetime) -> datetime:
    """The oldest window a late adjustment can touch (metering refuses older events)."""
    return window_start - timedelta(hours=settings.USAGE_LATENESS_HOURS) - windows.window_length()


def billing_run_claim(*, window_start: datetime, trigger: str = "", takeover_of: int | None = None) -> RunOutcome:
    """Claim the window's run (creating it if needed). claimed=False: someone else is running it.

    takeover_of: claim only a run still running in that attempt whose lease ran out (its worker died);
    one that finished or was resumed meanwhile is left alone.
    """
    if not windows.is_window_start(window_start):
        raise ValueError(f"{window_start.isoformat()} is not the start of a billing window")
    window_end = window_start + windows.window_length()
    if window_end > timezone.now():
        raise ValueError("that window has not closed yet")
    try:
        with transaction.atomic():
            run, _ = BillingRun.objects.get_or_create(window_start=window_start, defaults={"window_end": window_end})
    except IntegrityError:  # created by a concurrent claim a moment ago
        run = BillingRun.objects.get(window_start=window_start)
    now = timezone.now()
    stale = Q(status=Status.RUNNING, heartbeat_at__lt=now - _lease())
    claimable = stale if takeover_of is not None else stale | Q(
        status__in=[Status.PENDING, Status.SUCCEEDED, Status.PARTIAL, Status.FAILED])
    attempt = run.attempt if takeover_of is None else takeover_of
    claimed = BillingRun.objects.filter(claimable, id=run.id, attempt=attempt).update(
        status=Status.RUNNING, attempt=F("attempt") + 1, trigger=trigger[:100], started_at=now, heartbeat_at=now,
        finished_at=None, error="",
    )
    run.refresh_from_db()
    if not claimed:
        return RunOutcome(run, False, f"the billing run of {window_start.isoformat()} is already running "
                                      f"(attempt {run.attempt}, since {run.started_at:%H:%M:%S}); nothing to do")
    return RunOutcome(run, True, f"claimed the billing run of {window_start.isoformat()} (attempt {run.attempt})")


def billing_run_lease_left(run: BillingRun) -> float:
    """Seconds until a running run's lease runs out and it may be taken over (0 when it has)."""
    if run.heartbeat_at is None:
        return 0.0
    return max((run.heartbeat_at + _lease() - timezone.now()).total_seconds(), 0.0)


def _late_usage_since(run: BillingRun) -> datetime:
    """Records of earlier windows written since the previous window's run started may be late usage.

    Runs go in window order (the due task catches up oldest first), so run N looks at what was
    written since run N-1 started; a window with no earlier run looks at the whole lateness range.
    """
    previous = (BillingRun.objects.filter(window_start__lt=run.window_start, status__in=[Status.SUCCEEDED, Status.PARTIAL])
                .order_by("-window_start").values_list("started_at", flat=True).first())
    floor = _late_usage_from(run.window_start)
    return max(previous - LATE_USAGE_MARGIN, floor) if previous else floor


def _count_charged(result: ChunkResult) -> None:
    """What a chunk or an owed retry charged, once its charges committed. Counters only go up, so a
    chunk whose late reversals outweigh its charges (net credits below zero) adds no credits."""
    metrics.BILLING_PROJECTS.inc(len(result.projects))
    metrics.BILLING_CHARGES.inc(result.charges)
    # Micro-credits → credits for graphs: the one place billing hands an amount to a float.
    metrics.BILLING_CREDITS_CHARGED.inc(max(result.credits, 0) / MICROS_PER_CREDIT)


def _count_run_finished(*, state: str, started_at: datetime | None, finished_at: datetime, owed_count: int = 0) -> None:
    """A run attempt's final state (succeeded, partial, failed), after the transaction that decided it."""
    metrics.BILLING_RUNS.labels(state=state).inc()
    if started_at is not None:
        metrics.BILLING_RUN_DURATION.observe(max((finished_at - started_at).total_seconds(), 0.0))
    if owed_count:
        metrics.BILLING_FAILURES.inc(owed_count)


def billing_run_plan(*, run: BillingRun) -> int:
    """Split the attempt's projects with usage to charge into chunks of BILLING_CHUNK_SIZE. Returns the count."""
    since = _late_usage_since(run)
    BillingRun.objects.filter(id=run.id).update(late_usage_since=since)
    run.late_usage_since = since
    in_window = UsageRecord.objects.filter(window_start=run.window_start)
    late = UsageRecord.objects.filter(window_start__gte=_late_usage_from(run.window_start),
                                      window_start__lt=run.window_start, updated_at__gte=since)
    project_ids = {row[0] for qs in (in_window, late) for row in fetch_rows(qs.values_list("project_id").distinct())}
    ordered = sorted(project_ids)
    size = max(settings.BILLING_CHUNK_SIZE, 1)
    chunks = [
        BillingChunk(run=run, attempt=run.attempt, index=i, first_project_id=ordered[start],
                     last_project_id=ordered[min(start + size, len(ordered)) - 1])
        for i, start in enumerate(range(0, len(ordered), size))
    ]
    BillingChunk.objects.bulk_create(chunks)
    return len(chunks)


def _chunk_claim(run: BillingRun) -> BillingChunk | None:
    """Take the next pending chunk of the current attempt (or a stale running one) by compare-and-set."""
    now = timezone.now()
    claimable = Q(status=ChunkStatus.PENDING) | Q(status=ChunkStatus.RUNNING, claimed_at__lt=now - _lease())
    for chunk_id in (BillingChunk.objects.filter(claimable, run_id=run.id, attempt=run.attempt)
                     .order_by("index").values_list("id", flat=True)[:20]):
        if BillingChunk.objects.filter(claimable, id=chunk_id).update(status=ChunkStatus.RUNNING, claimed_at=now,
                                                                     worker=_worker_name()):
            return BillingChunk.objects.get(id=chunk_id)
    return None


def billing_chunk_process(*, chunk: BillingChunk, run: BillingRun) -> BillingChunk:
    """Charge one chunk, then move its unfunded projects into grace. A failure is recorded on the chunk."""
    try:
        result = charge_chunk(
            first_project_id=chunk.first_project_id, last_project_id=chunk.last_project_id,
            window_start=run.window_start, late_since=run.late_usage_since,
            late_from=_late_usage_from(run.window_start), run_id=run.id,
        )
    except Exception as exc:
        log.exception("billing chunk %s failed", chunk.id)
        chunk.status, chunk.error = ChunkStatus.FAILED, f"{type(exc).__name__}: {exc}"[:2000]
    else:
        chunk.status = ChunkStatus.DONE
        chunk.charges_created, chunk.credits_charged = result.charges, result.credits
        chunk.projects_charged, chunk.failures = len(result.projects), result.failures
        _count_charged(result)
        try:
            projects_enter_grace_if_unfunded(project_ids=result.maybe_unfunded)
        except Exception:  # charges are committed; the lifecycle sweep catches these projects up
            log.exception("lifecycle step of billing chunk %s failed", chunk.id)
    chunk.finished_at = timezone.now()
    chunk.save(update_fields=["status", "error", "charges_created", "credits_charged", "projects_charged", "failures",
                              "finished_at"])
    BillingRun.objects.filter(id=run.id, attempt=run.attempt).update(heartbeat_at=chunk.finished_at)
    return chunk


def billing_run_work(*, run_id: int, on_chunk: Callable[[BillingChunk], None] | None = None) -> int:
    """Take chunks of the run's current attempt until none is left, then try to finish it. Returns chunks done."""
    run = BillingRun.objects.get(id=run_id)
    done = 0
    while run.status == Status.RUNNING and (chunk := _chunk_claim(run)) is not None:
        billing_chunk_process(chunk=chunk, run=run)
        done += 1
        if on_chunk:
            on_chunk(chunk)
    billing_run_finish_if_done(run_id=run.id, attempt=run.attempt)
    return done


def billing_run_finish_if_done(*, run_id: int, attempt: int) -> bool:
    """Whoever finishes the last chunk closes the run (compare-and-set on status and attempt).

    In one transaction with the close, what the attempt could not charge becomes owed and what it
    charged of earlier failures is settled, so a run is never closed with a debt left unrecorded.
    """
    chunks = list(BillingChunk.objects.filter(run_id=run_id, attempt=attempt).order_by("index"))
    if any(chunk.status in (ChunkStatus.PENDING, ChunkStatus.RUNNING) for chunk in chunks):
        return False
    failures: list[dict] = []
    errors: list[str] = []
    for chunk in chunks:
        failures += chunk.failures
        if chunk.status == ChunkStatus.FAILED:
            errors.append(f"chunk {chunk.index} (projects {chunk.first_project_id}-{chunk.last_project_id}): {chunk.error}")
    # Totals count every attempt's chunks and every retry: what the window was charged in all.
    totals = BillingChunk.objects.filter(run_id=run_id).aggregate(
        charges=Sum("charges_created"), credits=Sum("credits_charged"), projects=Sum("projects_charged"))
    retried = OwedCharge.objects.filter(run_id=run_id).aggregate(charges=Sum("charges_created"),
                                                                 credits=Sum("credits_charged"))
    now = timezone.now()
    with transaction.atomic():
        run = BillingRun.objects.select_for_update().filter(id=run_id, attempt=attempt, status=Status.RUNNING).first()
        if run is None:
            return False
        owed_now = owed.owed_from_chunks(chunks)
        owed.owed_charges_settle_covered(run=run, late_usage_since=run.late_usage_since, owed=owed_now, now=now)
        owed.owed_charges_record(run=run, owed=owed_now, late_usage_since=run.late_usage_since, now=now)
        still_owed = OwedCharge.objects.filter(run_id=run_id, status=OwedCharge.Status.OWED).exists()
        state = Status.PARTIAL if still_owed else Status.SUCCEEDED
        BillingRun.objects.filter(id=run_id).update(
            status=state, finished_at=now, failures=failures[:1000],
            error="\n".join(errors)[:4000],
            charges_created=(totals["charges"] or 0) + (retried["charges"] or 0),
            credits_charged=(totals["credits"] or 0) + (retried["credits"] or 0),
            projects_charged=totals["projects"] or 0,
        )
    _count_run_finished(state=state, started_at=run.started_at, finished_at=now, owed_count=len(owed_now))
    return True


def billing_run_fail(*, run_id: int, attempt: int, error: str) -> None:
    now = timezone.now()
    if BillingRun.objects.filter(id=run_id, attempt=attempt, status=Status.RUNNING).update(
            status=Status.FAILED, finished_at=now, error=error[:4000]):
        started_at = BillingRun.objects.filter(id=run_id).values_list("started_at", flat=True).first()
        _count_run_finished(state=Status.FAILED, started_at=started_at, finished_at=now)


def billing_run_execute(*, window_start: datetime, trigger: str = "", parallel: bool = False,
                        on_chunk: Callable[[BillingChunk], None] | None = None,
                        takeover_of: int | None = None) -> RunOutcome:
    """Bill one closed window, synchronously (the command, the bench, tests, the Celery task).

    parallel: also enqueue BILLING_PARALLEL_WORKERS Celery tasks that take chunks beside this one.
    takeover_of: only resume that attempt, if it is still running and its lease ran out (billing_run_claim).
    An exception marks the attempt failed and is re-raised; a re-run resumes it and charges nothing twice.
    """
    outcome = billing_run_claim(window_start=window_start, trigger=trigger, takeover_of=takeover_of)
    if not outcome.claimed:
        return outcome
    run = outcome.run
    try:
        chunk_count = billing_run_plan(run=run)
        if parallel and chunk_count > 1:
            from ..tasks import billing_run_work_task

            # Helpers are only a speed-up: the chunks are committed rows and this worker takes every chunk
            # no helper took, so with the broker down the run is slower, never failed.
            for _ in range(min(settings.BILLING_PARALLEL_WORKERS, chunk_count - 1)):
                if not enqueue(billing_run_work_task, run.id):
                    break
        billing_run_work(run_id=run.id, on_chunk=on_chunk)
    except Exception as exc:
        billing_run_fail(run_id=run.id, attempt=run.attempt, error=f"{type(exc).__name__}: {exc}")
        raise
    run.refresh_from_db()
    outcome.run = run
    if run.status == Status.RUNNING:
        outcome.message = f"{outcome.message}; other workers are finishing its chunks"
    else:
        outcome.message = billing_run_summary(run)
    return outcome


def billing_run_summary(run: BillingRun) -> str:
    from creditservice.lib.money import format_amount

    duration = f"{run.duration_seconds:.2f} s" if run.duration_seconds is not None else "-"
    text = (f"billing run {run.window_start.isoformat()} {run.status}: {run.charges_created} charges, "
            f"{run.projects_charged} projects, {format_amount(run.credits_charged)} credits, "
            f"{len(run.failures)} failures, {duration}")
    if run.status == Status.PARTIAL:
        count = run.owed_charges.filter(status=OwedCharge.Status.OWED).count()
        text += f"; {count} owed, retried by the billing beat"
    return text


def billing_windows_due(*, now: datetime | None = None) -> list[datetime]:
    """Windows to bill, oldest first: closed windows not yet billed, from the last billed window (or
    the lateness range) to the last closed window, so a stopped beat never leaves a window unbilled;
    and any earlier run that never finished (failed, or a worker died) once its retry time has come."""
    now = now or timezone.now()
    last_start, _ = windows.last_closed_window(now)
    floor = _late_usage_from(last_start) + windows.window_length()
    billed = set(BillingRun.objects.filter(window_start__gte=floor, status__in=[Status.SUCCEEDED, Status.PARTIAL])
                 .values_list("window_start", flat=True))
    latest = max(billed) if billed else None
    first = latest + windows.window_length() if latest else last_start
    waiting, retry = set(), set()
    unfinished = BillingRun.objects.filter(window_start__lte=last_start).exclude(
        status__in=[Status.SUCCEEDED, Status.PARTIAL]).values_list("window_start", "status", "attempt", "finished_at",
                                                                   "heartbeat_at")
    for start, status, attempt, finished_at, heartbeat_at in unfinished:
        if status == Status.FAILED and finished_at and finished_at + owed.retry_delay(attempt) > now:
            waiting.add(start)  # back-off: a failing window is not hammered every beat
        elif status == Status.RUNNING and heartbeat_at and heartbeat_at >= now - _lease():
            waiting.add(start)  # alive: its worker finishes it
        else:
            retry.add(start)
    regular = {start for start, _ in windows.windows_between(max(first, floor), last_start) if start not in billed}
    return sorted((regular - waiting) | retry)


def billing_owed_retry(*, owed_id: int, now: datetime | None = None, force: bool = False) -> OwedCharge | None:
    """Retry one owed row through the run's own path: charge_chunk over its projects and the run's scope.

    None if the row is not due (or no longer owed). The charges' deterministic keys make a retry that
    races a re-run, another retry or a late worker charge nothing twice.
    """
    now = now or timezone.now()
    row = owed.owed_charge_claim(owed_id=owed_id, now=now, force=force)
    if row is None:
        return None
    run = row.run
    try:
        result = charge_chunk(
            first_project_id=row.first_project_id, last_project_id=row.last_project_id, window_start=run.window_start,
            late_since=row.late_usage_since, late_from=_late_usage_from(run.window_start), run_id=run.id,
        )
    except Exception as exc:
        log.exception("retry of owed billing %s failed", row.id)
        return owed.owed_charge_record_retry(row=row, charges=0, credits=0, failures=[], now=now,
                                             error=f"{type(exc).__name__}: {exc}"[:2000])
    _count_charged(result)
    try:
        projects_enter_grace_if_unfunded(project_ids=result.maybe_unfunded)
    except Exception:  # charges are committed; the lifecycle sweep catches these projects up
        log.exception("lifecycle step of owed billing %s failed", row.id)
    row = owed.owed_charge_record_retry(row=row, charges=result.charges, credits=result.credits,
                                        failures=result.failures, error="", now=now)
    if row.status == OwedCharge.Status.OWED and row.attempts >= settings.BILLING_RETRY_ATTEMPTS_CAP:
        log.error("owed billing %s (%s) has failed %d times: %s", row.id, row, row.attempts, row.last_error[:500])
    return row


def billing_owed_retry_due(*, now: datetime | None = None) -> list[OwedCharge]:
    """Retry the owed rows whose time has come, at most BILLING_RETRY_BATCH (the rest wait for the next beat)."""
    now = now or timezone.now()
    retried = []
    for owed_id in owed.owed_charges_due(now=now, limit=settings.BILLING_RETRY_BATCH):
        row = billing_owed_retry(owed_id=owed_id, now=now)
        if row is not None:
            retried.append(row)
    return retried


def billing_catch_up(*, trigger: str = "beat", parallel: bool = True) -> list[str]:
    """The hourly beat: bill every window due (one failing window does not stop the others: it is
    recorded on its run and retried with back-off), then retry what earlier runs still owe."""
    messages = []
    for window_start in billing_windows_due():
        try:
            outcome = billing_run_execute(window_start=window_start, trigger=trigger, parallel=parallel)
        except Exception as exc:
            log.exception("billing run %s failed", window_start.isoformat())
            messages.append(f"billing run {window_start.isoformat()} failed: {type(exc).__name__}: {exc}")
            continue
        messages.append(outcome.message)
    retried = billing_owed_retry_due()
    if retried:
        charged = sum(1 for row in retried if row.status != OwedCharge.Status.OWED)
        messages.append(f"retried {len(retried)} owed: {charged} charged, {len(retried) - charged} still owed")
    owed.billing_runs_settle()
    for message in messages:
        log.info(message)
    return messages
