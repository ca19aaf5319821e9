"""Pushed usage events: validate a batch, store new events, add them to their windows' records.

The hot path is set-based on purpose (ingestion target: 10,000 events/s in batches of 1,000 on two
cores): per event only Python validation runs; the database sees one statement per batch on
PostgreSQL. The unique (project, event_id) makes a resent event a duplicate whether it was sent in
the same batch, concurrently, or last week: INSERT ... ON CONFLICT DO NOTHING RETURNING tells which
events are new, and only those are summed into the UsageRecord of their window, in the same
transaction. A late event for a window already billed is added the same way; billing charges the
difference as a late adjustment (see selectors.usage_totals(changed_since=...)).
"""

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from creditservice.lib.money import MoneyError
from quotas.models import ResourceType
from quotas.quantities import parse_quantity
from wallets.models import Project

from .models import UsageEvent, UsageRecord
from .windows import window_length

logger = logging.getLogger(__name__)

MAX_BATCH = 1000
MAX_EVENT_ID_LENGTH = 200
FUTURE_TOLERANCE = timedelta(minutes=5)
PUSH_REFERENCE = "pushed events"


class Reason:
    INVALID = "invalid_event"
    UNKNOWN_PROJECT = "unknown_project"  # also for a project the key may not report for (not revealed)
    UNKNOWN_RESOURCE_TYPE = "unknown_resource_type"
    IN_FUTURE = "timestamp_in_future"
    TOO_OLD = "timestamp_too_old"


@dataclass
class IngestResult:
    results: list[dict[str, Any]] = field(default_factory=list)
    accepted: int = 0
    duplicate: int = 0
    rejected: int = 0

    def as_body(self) -> dict[str, Any]:
        return {"accepted": self.accepted, "duplicate": self.duplicate, "rejected": self.rejected,
                "results": self.results}


@dataclass
class _Event:
    index: int
    event_id: str
    project_id: int
    resource_type_id: int
    quantity: int  # micro-units
    timestamp: datetime
    window_start: datetime


_FIELDS = {"id", "project", "resource_type", "quantity", "timestamp"}


def _parse(raw: Any) -> tuple[tuple[str, str, str, int, datetime] | None, str]:
    """One event's shape → (id, project slug, type code, quantity, timestamp) or (None, why)."""
    if not isinstance(raw, dict):
        return None, "an event is an object"
    if raw.keys() != _FIELDS:
        missing, unknown = _FIELDS - raw.keys(), raw.keys() - _FIELDS
        parts = ([f"missing {', '.join(sorted(missing))}"] if missing else []) + (
            [f"unknown field {', '.join(sorted(map(str, unknown)))}"] if unknown else [])
        return None, "; ".join(parts)
    event_id, project, resource_type = raw["id"], raw["project"], raw["resource_type"]
    if not isinstance(event_id, str) or not 0 < len(event_id) <= MAX_EVENT_ID_LENGTH:
        return None, f"id must be a string of 1 to {MAX_EVENT_ID_LENGTH} characters"
    if not isinstance(project, str) or not project:
        return None, "project must be a project slug"
    if not isinstance(resource_type, str) or not resource_type:
        return None, "resource_type must be a resource type code"
    try:
        # The one grammar of amounts and quantities; zero is a valid measurement.
        quantity = parse_quantity(raw["quantity"], allow_zero=True)
    except MoneyError as exc:
        return None, f"quantity {exc}"
    stamp = raw["timestamp"]
    if not isinstance(stamp, str):
        return None, "timestamp must be an ISO 8601 string with a time zone"
    try:
        timestamp = datetime.fromisoformat(stamp)
    except ValueError:
        return None, "timestamp must be an ISO 8601 string with a time zone"
    if timestamp.tzinfo is None:
        return None, "timestamp needs a time zone (for example Z or +00:00)"
    return (event_id, project, resource_type, quantity, timestamp), ""


def usage_events_ingest(*, events: list[Any], allowed_project_id: int | None, now: datetime | None = None) -> IngestResult:
    """Take a batch of pushed events; each is accepted, a duplicate or rejected with a reason.

    allowed_project_id: None for platform callers; a project-scoped key may only report its own
    project (events for other projects are rejected one by one, as an unknown project).
    """
    now = now or timezone.now()
    oldest = now - timedelta(hours=settings.USAGE_LATENESS_HOURS)
    newest = now + FUTURE_TOLERANCE
    length = int(window_length().total_seconds())

    parsed: list[tuple[int, tuple[str, str, str, int, datetime]]] = []
    result = IngestResult(results=[{} for _ in events])
    for index, raw in enumerate(events):
        event, why = _parse(raw)
        if event is None:
            event_id = raw.get("id") if isinstance(raw, dict) and isinstance(raw.get("id"), str) else None
            result.results[index] = {"id": event_id, "status": "rejected", "reason": Reason.INVALID, "detail": why}
        else:
            parsed.append((index, event))

    slugs = {event[1] for _, event in parsed}
    codes = {event[2] for _, event in parsed}
    projects = dict(Project.objects.filter(slug__in=slugs).values_list("slug", "id")) if slugs else {}
    types = dict(ResourceType.objects.filter(code__in=codes).values_list("code", "id")) if codes else {}

    batch: dict[tuple[int, str], _Event] = {}
    duplicates_in_batch: list[tuple[int, str]] = []
    for index, (event_id, slug, code, quantity, timestamp) in parsed:
        project_id = projects.get(slug)
        reason = ""
        if project_id is None or (allowed_project_id is not None and project_id != allowed_project_id):
            reason, detail = Reason.UNKNOWN_PROJECT, f"no project {slug!r}"
        elif code not in types:
            reason, detail = Reason.UNKNOWN_RESOURCE_TYPE, f"no resource type {code!r}"
        elif timestamp > newest:
            reason, detail = Reason.IN_FUTURE, "timestamp is more than 5 minutes in the future"
        elif timestamp < oldest:
            reason, detail = Reason.TOO_OLD, f"timestamp is older than {settings.USAGE_LATENESS_HOURS} h"
        if reason:
            result.results[index] = {"id": event_id, "status": "rejected", "reason": reason, "detail": detail}
            continue
        key = (project_id, event_id)
        if key in batch:
            duplicates_in_batch.append((index, event_id))
            continue
        epoch = int(timestamp.timestamp())
        window_start = datetime.fromtimestamp(epoch - epoch % length, tz=UTC)
        batch[key] = _Event(index, event_id, project_id, types[code], quantity, timestamp.astimezone(UTC), window_start)

    inserted = _store(list(batch.values()), now=now, length=timedelta(seconds=length)) if batch else set()

    for key, event in batch.items():
        status = "accepted" if key in inserted else "duplicate"
        result.results[event.index] = {"id": event.event_id, "status": status}
    for index, event_id in duplicates_in_batch:
        result.results[index] = {"id": event_id, "status": "duplicate"}
    for entry in result.results:
        setattr(result, entry["status"], getattr(result, entry["status"]) + 1)
    return result


def _store(events: list[_Event], *, now: datetime, length: timedelta) -> set[tuple[int, str]]:
    # One global order for every sender: two batches that overlap then wait on each other's unique
    # index entries in the same order and cannot deadlock.
    events.sort(key=lambda e: (e.project_id, e.event_id))
    store = _store_postgresql if connection.vendor == "postgresql" else _store_generic
    for attempt in range(3):
        try:
            with transaction.atomic():
                return store(events, now=now, length=length)
        except OperationalError as exc:
            # Ordered locking should make this impossible; a retry keeps a surprise from losing a batch.
            if "deadlock" not in str(exc).lower() or attempt == 2:
                raise
            logger.warning("usage ingestion deadlock, retrying: %s", exc)
    raise AssertionError("unreachable")


_EVENTS = UsageEvent._meta.db_table
_RECORDS = UsageRecord._meta.db_table

_PG_SQL = f"""
WITH incoming AS (
    SELECT * FROM unnest(%s::bigint[], %s::text[], %s::bigint[], %s::bigint[], %s::timestamptz[], %s::timestamptz[])
        AS t(project_id, event_id, resource_type_id, quantity, ts, window_start)
), inserted AS (
    INSERT INTO {_EVENTS} (project_id, event_id, resource_type_id, quantity, "timestamp", window_start, received_at)
    SELECT project_id, event_id, resource_type_id, quantity, ts, window_start, %s FROM incoming
    ON CONFLICT (project_id, event_id) DO NOTHING
    RETURNING project_id, event_id, resource_type_id, quantity, window_start
), summed AS (
    SELECT project_id, resource_type_id, window_start, sum(quantity) AS quantity
    FROM inserted GROUP BY project_id, resource_type_id, window_start
), added AS (
    INSERT INTO {_RECORDS} AS r (project_id, resource_type_id, window_start, window_end, quantity, source,
                                 source_reference, created_at, updated_at)
    SELECT project_id, resource_type_id, window_start, window_start + %s::interval, quantity, '{UsageRecord.Source.PUSH}',
           '{PUSH_REFERENCE}', %s, %s
    FROM summed ORDER BY project_id, resource_type_id, window_start
    ON CONFLICT (project_id, resource_type_id, window_start, source)
    DO UPDATE SET quantity = r.quantity + EXCLUDED.quantity, updated_at = EXCLUDED.updated_at
    RETURNING 1
)
SELECT project_id, event_id FROM inserted
"""


def _store_postgresql(events: list[_Event], *, now: datetime, length: timedelta) -> set[tuple[int, str]]:
    """One statement: the events, then one upsert per (project, type, window) adding their sum."""
    params = [
        [e.project_id for e in events], [e.event_id for e in events], [e.resource_type_id for e in events],
        [e.quantity for e in events], [e.timestamp for e in events], [e.window_start for e in events],
        now, length, now, now,
    ]
    with connection.cursor() as cursor:
        cursor.execute(_PG_SQL, params)
        return {(row[0], row[1]) for row in cursor.fetchall()}


def _store_generic(events: list[_Event], *, now: datetime, length: timedelta) -> set[tuple[int, str]]:
    """The same in portable SQL (SQLite, the embedded default): events by chunk, sums added per window."""
    adapt = connection.ops.adapt_datetimefield_value
    stamp = adapt(now)
    inserted: set[tuple[int, str]] = set()
    with connection.cursor() as cursor:
        for start in range(0, len(events), 500):
            chunk = events[start:start + 500]
            values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s)"] * len(chunk))
            params: list[Any] = []
            for e in chunk:
                params += [e.project_id, e.event_id, e.resource_type_id, e.quantity, adapt(e.timestamp),
                           adapt(e.window_start), stamp]
            cursor.execute(
                f'INSERT INTO {_EVENTS} (project_id, event_id, resource_type_id, quantity, "timestamp", window_start, '
                f"received_at) VALUES {values} ON CONFLICT (project_id, event_id) DO NOTHING RETURNING project_id, event_id",
                params,
            )
            inserted.update((row[0], row[1]) for row in cursor.fetchall())
        sums: dict[tuple[int, int, datetime], int] = {}
        for e in events:
            if (e.project_id, e.event_id) in inserted:
                group = (e.project_id, e.resource_type_id, e.window_start)
                sums[group] = sums.get(group, 0) + e.quantity
        cursor.executemany(
            f"INSERT INTO {_RECORDS} (project_id, resource_type_id, window_start, window_end, quantity, source, "
            "source_reference, created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (project_id, resource_type_id, window_start, source) "
            f"DO UPDATE SET quantity = {_RECORDS}.quantity + excluded.quantity, updated_at = excluded.updated_at",
            [
                (project_id, type_id, adapt(window_start), adapt(window_start + length), quantity,
                 UsageRecord.Source.PUSH, PUSH_REFERENCE, stamp, stamp)
                for (project_id, type_id, window_start), quantity in sorted(sums.items())
            ],
        )
    return inserted
