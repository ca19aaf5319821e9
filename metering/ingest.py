"""Pushed usage events: validate a batch, store new events, add them to their windows' records.

The hot path is set-based on purpose (ingestion target: 10,000 events/s in batches of 1,000 on two
cores): per event only Python validation runs; the database sees one statement per batch on
PostgreSQL. The unique (project, event_id) makes a resent event a duplicate whether it was sent in
the same batch, concurrently, or last week: INSERT ... ON CONFLICT DO NOTHING RETURNING tells which
events are new, and only those are summed into the UsageRecord of their window, in the same
transaction. A late event for a window already billed is added the same way; billing charges the
difference as a late adjustment (see selectors.usage_totals(changed_since=...)).

A batch is answered per event, never lost as a whole for one bad event: what the database could not
store is refused before it is written (control characters in an id, a slug or a code; a quantity
beyond the bound; an event that would take its window's record past the bound), and should the
database still refuse a value, the batch is stored event by event and only that event is rejected.
"""

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import DataError, IntegrityError, OperationalError, connection, transaction
from django.utils import timezone

from creditservice.lib.metrics import INGESTED_EVENTS
from creditservice.lib.money import MAX_QUANTITY_MICROS, MoneyError, format_micros
from creditservice.lib.pg_arrays import pg_array
from creditservice.lib.text import TextError, clean_text
from quotas.models import ResourceType
from quotas.quantities import parse_quantity
from quotas.selectors import resource_type_codes, unknown_resource_type
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
    # The window's record (this project, type and window, pushed events) would pass MAX_QUANTITY_MICROS.
    WINDOW_TOTAL_TOO_LARGE = "window_total_too_large"


# Errors about the data itself (a value the database cannot hold): the batch is then stored event by
# event so that only the event at fault is rejected. Anything else (a lock, a lost connection) is
# raised: the client resends the batch and the event ids make that harmless.
_DATA_ERRORS = (DataError, IntegrityError, OverflowError, ValueError)


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
_SLUG_LENGTH = Project._meta.get_field("slug").max_length
_CODE_LENGTH = ResourceType._meta.get_field("code").max_length


def _names(keys: set) -> str:
    """Field names for a message: escaped (a NUL or a lone surrogate in a key must not reach the answer), few, short."""
    shown = sorted(str(k).encode("unicode_escape").decode("ascii")[:40] for k in keys)
    return ", ".join(shown[:5]) + (f" (+{len(shown) - 5} more)" if len(shown) > 5 else "")


def _parse(raw: Any) -> tuple[tuple[str, str, str, int, datetime] | None, str]:
    """One event's shape → (id, project slug, type code, quantity, timestamp) or (None, why)."""
    if not isinstance(raw, dict):
        return None, "an event is an object"
    if raw.keys() != _FIELDS:
        missing, unknown = _FIELDS - raw.keys(), raw.keys() - _FIELDS
        parts = ([f"missing {', '.join(sorted(missing))}"] if missing else []) + (
            [f"unknown field {_names(unknown)}"] if unknown else [])
        return None, "; ".join(parts)
    event_id, project, resource_type = raw["id"], raw["project"], raw["resource_type"]
    if not isinstance(event_id, str) or not 0 < len(event_id) <= MAX_EVENT_ID_LENGTH:
        return None, f"id must be a string of 1 to {MAX_EVENT_ID_LENGTH} characters"
    if not isinstance(project, str) or not project:
        return None, "project must be a project slug"
    if not isinstance(resource_type, str) or not resource_type:
        return None, "resource_type must be a resource type code"
    # PostgreSQL cannot store NUL nor any database a lone surrogate: refused here, not a 500 for the batch.
    for name, value, length in (("id", event_id, MAX_EVENT_ID_LENGTH), ("project", project, _SLUG_LENGTH),
                                ("resource_type", resource_type, _CODE_LENGTH)):
        try:
            clean_text(value, max_length=length)
        except TextError as exc:
            return None, f"{name} {exc}"
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


def _echoable(event_id: object) -> str | None:
    """The id as the answer can carry it back: a lone surrogate cannot be written as UTF-8 (then null)."""
    if not isinstance(event_id, str):
        return None
    try:
        event_id.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return event_id[:MAX_EVENT_ID_LENGTH]


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
            event_id = raw.get("id") if isinstance(raw, dict) else None
            result.results[index] = {"id": _echoable(event_id), "status": "rejected", "reason": Reason.INVALID,
                                     "detail": why}
        else:
            parsed.append((index, event))

    slugs = {event[1] for _, event in parsed}
    codes = {event[2] for _, event in parsed}
    projects = dict(Project.objects.filter(slug__in=slugs).values_list("slug", "id")) if slugs else {}
    types = dict(ResourceType.objects.filter(code__in=codes).values_list("code", "id")) if codes else {}

    batch: dict[tuple[int, str], _Event] = {}
    known_codes: list[str] = []
    duplicates_in_batch: list[tuple[int, tuple[int, str]]] = []
    for index, (event_id, slug, code, quantity, timestamp) in parsed:
        project_id = projects.get(slug)
        reason = ""
        if project_id is None or (allowed_project_id is not None and project_id != allowed_project_id):
            reason, detail = Reason.UNKNOWN_PROJECT, f"no project {slug!r}"
        elif code not in types:
            known_codes = known_codes or resource_type_codes()  # once per batch, not once per event
            reason, detail = Reason.UNKNOWN_RESOURCE_TYPE, unknown_resource_type(code, known_codes)
        elif timestamp > newest:
            reason, detail = Reason.IN_FUTURE, "timestamp is more than 5 minutes in the future"
        elif timestamp < oldest:
            reason, detail = Reason.TOO_OLD, f"timestamp is older than {settings.USAGE_LATENESS_HOURS} h"
        if reason:
            result.results[index] = {"id": event_id, "status": "rejected", "reason": reason, "detail": detail}
            continue
        key = (project_id, event_id)
        if key in batch:
            duplicates_in_batch.append((index, key))
            continue
        epoch = int(timestamp.timestamp())
        window_start = datetime.fromtimestamp(epoch - epoch % length, tz=UTC)
        batch[key] = _Event(index, event_id, project_id, types[code], quantity, timestamp.astimezone(UTC), window_start)

    stored = _store_isolated(list(batch.values()), now=now, length=timedelta(seconds=length)) if batch else Stored()

    for key, event in batch.items():
        if key in stored.refused:
            reason, detail = stored.refused[key]
            result.results[event.index] = {"id": event.event_id, "status": "rejected", "reason": reason, "detail": detail}
        else:
            status = "accepted" if key in stored.inserted else "duplicate"
            result.results[event.index] = {"id": event.event_id, "status": status}
    for index, key in duplicates_in_batch:
        # A second copy in the batch is a duplicate of the first, or rejected with it.
        first = result.results[batch[key].index]
        result.results[index] = {**first} if first["status"] == "rejected" else {"id": key[1], "status": "duplicate"}
    by_label: Counter[tuple[str, str]] = Counter()
    for entry in result.results:
        setattr(result, entry["status"], getattr(result, entry["status"]) + 1)
        by_label[entry["status"], entry.get("reason", "")] += 1
    # One increment per (result, reason) of the batch, not per event: this is the hot path. The
    # reasons are the closed set of Reason codes.
    for (status, reason), count in by_label.items():
        INGESTED_EVENTS.labels(result=status, reason=reason).inc(count)
    return result


@dataclass
class Stored:
    inserted: set[tuple[int, str]] = field(default_factory=set)  # new events, counted in their windows
    refused: dict[tuple[int, str], tuple[str, str]] = field(default_factory=dict)  # key → (reason, detail)


class _WindowTotalBound(Exception):
    """The one-statement path met a window that would pass the bound: the precise path takes the batch."""


class _Raced(Exception):
    """Another batch created a window's record between our read and our write (PostgreSQL cannot lock a
    row that does not exist yet), so our check of the bound is stale: roll back and read again."""


_TOO_LARGE = (Reason.WINDOW_TOTAL_TOO_LARGE,
              f"this event would take the usage of its project, resource type and window past "
              f"{format_micros(MAX_QUANTITY_MICROS)}")


def _store_isolated(events: list[_Event], *, now: datetime, length: timedelta) -> Stored:
    """The batch at once; if the database refuses a value, event by event, rejecting only those it refuses."""
    try:
        return _store(events, now=now, length=length)
    except _DATA_ERRORS as exc:
        logger.warning("a usage batch could not be stored at once (%s: %s); storing it event by event",
                       type(exc).__name__, str(exc)[:200])
    stored = Stored()
    for event in events:
        key = (event.project_id, event.event_id)
        try:
            one = _store([event], now=now, length=length)
        except _DATA_ERRORS as exc:
            logger.warning("usage event %r of project %s could not be stored: %s", event.event_id[:80], event.project_id,
                           str(exc)[:200])
            stored.refused[key] = (Reason.INVALID, f"the event cannot be stored ({type(exc).__name__})")
            continue
        stored.inserted |= one.inserted
        stored.refused.update(one.refused)
    return stored


def _store(events: list[_Event], *, now: datetime, length: timedelta) -> Stored:
    # One global order for every sender: two batches that overlap then wait on each other's unique
    # index entries in the same order and cannot deadlock.
    events.sort(key=lambda e: (e.project_id, e.event_id))
    if connection.vendor == "postgresql" and _batch_within_bound(events):
        try:
            return _in_transaction(_store_postgresql, events, now=now, length=length)
        except _WindowTotalBound:
            pass  # rolled back; the precise path rejects just the events past the bound
    return _in_transaction(_store_generic, events, now=now, length=length)


def _in_transaction(store: Callable[..., Stored], events: list[_Event], *, now: datetime, length: timedelta) -> Stored:
    for attempt in range(3):
        try:
            with transaction.atomic():
                return store(events, now=now, length=length)
        except _Raced:
            if attempt == 2:
                raise OperationalError("usage ingestion kept racing another batch on a window's total") from None
            logger.warning("usage ingestion raced another batch on a window's total, retrying")
        except OperationalError as exc:
            # Ordered locking should make this impossible; a retry keeps a surprise from losing a batch.
            if "deadlock" not in str(exc).lower() or attempt == 2:
                raise
            logger.warning("usage ingestion deadlock, retrying: %s", exc)
    raise AssertionError("unreachable")


def _batch_within_bound(events: list[_Event]) -> bool:
    """Whether the batch's own sum per window is within the bound (the one-statement path checks the rest)."""
    sums: dict[tuple[int, int, datetime], int] = {}
    for e in events:
        group = (e.project_id, e.resource_type_id, e.window_start)
        sums[group] = sums.get(group, 0) + e.quantity
        if sums[group] > MAX_QUANTITY_MICROS:
            return False
    return True


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
    WHERE r.quantity <= {MAX_QUANTITY_MICROS} - EXCLUDED.quantity
    RETURNING 1
)
SELECT project_id, event_id, (SELECT count(*) FROM added) = (SELECT count(*) FROM summed) FROM inserted
"""


def _store_postgresql(events: list[_Event], *, now: datetime, length: timedelta) -> Stored:
    """One statement: the events, then one upsert per (project, type, window) adding their sum.

    A record the sum would take past the bound is left as it is (the upsert's WHERE, on the locked
    row); then fewer records were written than windows summed, and _WindowTotalBound rolls it all back.
    """
    # Each column as one array literal: the driver's list dumper escaped every element in Python, about
    # a third of a 1,000-event batch's CPU (docs/performance.md).
    params = [
        pg_array([e.project_id for e in events], quote=False), pg_array([e.event_id for e in events], quote=True),
        pg_array([e.resource_type_id for e in events], quote=False), pg_array([e.quantity for e in events], quote=False),
        pg_array([e.timestamp.isoformat() for e in events], quote=True),
        pg_array([e.window_start.isoformat() for e in events], quote=True),
        now, length, now, now,
    ]
    with connection.cursor() as cursor:
        cursor.execute(_PG_SQL, params)
        rows = cursor.fetchall()
    if rows and not rows[0][2]:
        raise _WindowTotalBound
    return Stored(inserted={(row[0], row[1]) for row in rows})


def _store_generic(events: list[_Event], *, now: datetime, length: timedelta) -> Stored:
    """The same in portable SQL (SQLite, the embedded default; PostgreSQL near the bound), event by event
    within the bound: new events by chunk, then each window's record locked and read, the events that
    would take it past the bound taken out again, and the rest added per window."""
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
        new = [e for e in events if (e.project_id, e.event_id) in inserted]
        totals = _push_totals(new)
        sums: dict[tuple[int, int, datetime], int] = {}
        stored = Stored()
        for e in new:
            group = (e.project_id, e.resource_type_id, e.window_start)
            if totals.get(group, 0) + sums.get(group, 0) + e.quantity > MAX_QUANTITY_MICROS:
                stored.refused[(e.project_id, e.event_id)] = _TOO_LARGE
                continue
            sums[group] = sums.get(group, 0) + e.quantity
            stored.inserted.add((e.project_id, e.event_id))
        if stored.refused:
            cursor.executemany(f"DELETE FROM {_EVENTS} WHERE project_id = %s AND event_id = %s", list(stored.refused))
        written = 0
        for (project_id, type_id, window_start), quantity in sorted(sums.items()):
            cursor.execute(
                f"INSERT INTO {_RECORDS} (project_id, resource_type_id, window_start, window_end, quantity, source, "
                "source_reference, created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (project_id, resource_type_id, window_start, source) "
                f"DO UPDATE SET quantity = {_RECORDS}.quantity + excluded.quantity, updated_at = excluded.updated_at "
                f"WHERE {_RECORDS}.quantity <= {MAX_QUANTITY_MICROS} - excluded.quantity",
                (project_id, type_id, adapt(window_start), adapt(window_start + length), quantity,
                 UsageRecord.Source.PUSH, PUSH_REFERENCE, stamp, stamp),
            )
            written += cursor.rowcount
    if written != len(sums):
        raise _Raced
    return stored


def _push_totals(events: list[_Event]) -> dict[tuple[int, int, datetime], int]:
    """The current pushed-usage record of each window the events add to, locked until the commit."""
    if not events:
        return {}
    groups = {(e.project_id, e.resource_type_id, e.window_start) for e in events}
    records = UsageRecord.objects.filter(
        source=UsageRecord.Source.PUSH, project_id__in={g[0] for g in groups}, window_start__in={g[2] for g in groups},
    ).order_by("id")
    if connection.vendor == "postgresql":
        records = records.select_for_update()
    rows = records.values_list("project_id", "resource_type_id", "window_start", "quantity")
    return {(p, t, w): quantity for p, t, w, quantity in rows if (p, t, w) in groups}
