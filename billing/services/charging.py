"""Charging one chunk of projects: usage totals → charges → ledger transfers, set-based.

What a chunk charges is derived from state, never remembered: for each (project, resource type,
window) it charges the window's recorded total, rounded once, minus what charges of that window
already took. Usage that grew is charged (late adjustment); usage that shrank (a re-collected window
can come back lower) is given back by a reversal, revenue → wallet, so the customer pays exactly for
the usage recorded. Keys are deterministic (regular: the window; adjustment and reversal: the window
plus the number of its charges and the quantity they cover), so a re-run, a resumed run or two runs
at once move each credit exactly once.
"""

import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import lru_cache

from django.db import connection, transaction
from django.db.models import Count, Sum
from django.utils import timezone

from creditservice.lib.errors import ApiError
from creditservice.lib.money import charge_micros
from metering import windows
from metering.models import UsageRecord
from quotas.models import ResourceType
from wallets import ledger
from wallets.models import Account, Transfer

from ..models import Charge
from ..rates import WindowRate, window_rate

log = logging.getLogger(__name__)

KEY_VERSION = "v1"
_CHARGE = Charge._meta.db_table


@lru_cache(maxsize=256)
def _iso(moment: datetime) -> str:
    # A chunk asks for the same few windows 5,000 times.
    return moment.isoformat()


def regular_key(project_id: int, resource_code: str, window_start: datetime) -> str:
    return f"{KEY_VERSION}:billing:{project_id}:{resource_code}:{_iso(window_start)}"


def adjustment_key(project_id: int, resource_code: str, window_start: datetime, already_charged: Decimal,
                   charges_so_far: int) -> str:
    # The state is the key: two runs that saw the same state compute the same adjustment and collide
    # on it; any later change is a new state and a new key. The count of the window's charges is part
    # of it because the quantity alone can come back (3 → 2 → 3 → 2 would repeat a reversal's key).
    return f"{regular_key(project_id, resource_code, window_start)}:n{charges_so_far}:adj:{already_charged.normalize():f}"


@dataclass
class ChunkResult:
    charges: int = 0
    credits: int = 0  # micro-credits
    projects: set[int] = field(default_factory=set)
    failures: list[dict] = field(default_factory=list)


@dataclass
class _Planned:
    project_id: int
    resource_type_id: int
    window_start: datetime
    window_end: datetime
    kind: str
    quantity: Decimal
    window_quantity: Decimal
    previously_charged: Decimal
    rate: WindowRate
    amount: int
    key: str
    record_ids: list[int]


def _failure(project_id: int, resource_type_id: int | None, window_start: datetime | None, reason: str) -> dict:
    return {"project_id": project_id, "resource_type_id": resource_type_id,
            "window_start": window_start.isoformat() if window_start else None, "reason": reason[:500]}


def _usage_groups(*, first_project_id: int, last_project_id: int, window_start: datetime,
                  late_since: datetime | None, late_from: datetime) -> dict[tuple, list]:
    """(project, type, window) → [window_end, total quantity, record ids] for the chunk's projects.

    The run's window in full, plus earlier windows (from late_from) with a record written since
    late_since: a late event or a re-collection after those windows were billed.
    """
    in_chunk = UsageRecord.objects.filter(project_id__gte=first_project_id, project_id__lte=last_project_id)
    fields = ("id", "project_id", "resource_type_id", "window_start", "window_end", "quantity")
    # The run's own window is most of the rows: its bounds are known, so they are not read per row
    # (turning 200,000 timestamps into datetimes is a good part of a 100,000-project run).
    window_end = window_start + windows.window_length()
    rows = [(record_id, project_id, type_id, window_start, window_end, quantity) for record_id, project_id, type_id, quantity
            in in_chunk.filter(window_start=window_start).values_list("id", "project_id", "resource_type_id", "quantity")]
    if late_since is not None:
        changed = set(
            in_chunk.filter(window_start__gte=late_from, window_start__lt=window_start, updated_at__gte=late_since)
            .values_list("project_id", "resource_type_id", "window_start")
        )
        if changed:
            late_windows = {key[2] for key in changed}
            projects = {key[0] for key in changed}
            rows += [row for row in in_chunk.filter(window_start__in=late_windows, project_id__in=projects).values_list(*fields)
                     if (row[1], row[2], row[3]) in changed]
    groups: dict[tuple, list] = {}
    for record_id, project_id, type_id, start, end, quantity in rows:
        group = groups.setdefault((project_id, type_id, start), [end, Decimal(0), []])
        group[1] += quantity
        group[2].append(record_id)
    return groups


def _already_charged(*, first_project_id: int, last_project_id: int, windows: set[datetime]) -> dict[tuple, tuple]:
    """(project, type, window) → (quantity, micro-credits, number of charges) of existing charges (net of reversals)."""
    if not windows:
        return {}
    rows = (
        Charge.objects.filter(project_id__gte=first_project_id, project_id__lte=last_project_id, window_start__in=windows)
        .values("project_id", "resource_type_id", "window_start")
        .annotate(quantity=Sum("quantity"), amount=Sum("amount"), count=Count("id"))
        .values_list("project_id", "resource_type_id", "window_start", "quantity", "amount", "count")
    )
    return {(p, t, w): (q, a, n) for p, t, w, q, a, n in rows}


def plan_chunk(*, first_project_id: int, last_project_id: int, window_start: datetime, late_since: datetime | None,
               late_from: datetime, result: ChunkResult) -> list[_Planned]:
    """Work out the charges of a chunk (reads only). Problems are added to result.failures."""
    groups = _usage_groups(first_project_id=first_project_id, last_project_id=last_project_id,
                           window_start=window_start, late_since=late_since, late_from=late_from)
    charged = _already_charged(first_project_id=first_project_id, last_project_id=last_project_id,
                               windows={key[2] for key in groups})
    types = {t.id: t for t in ResourceType.objects.filter(id__in={key[1] for key in groups})}
    rates: dict[tuple, WindowRate | ApiError] = {}
    planned: list[_Planned] = []
    for (project_id, type_id, start), (end, total, record_ids) in groups.items():
        previous_quantity, previous_amount, previous_count = charged.get((project_id, type_id, start), (Decimal(0), 0, 0))
        growth = total - previous_quantity
        if growth == 0:
            continue
        rate_key = (type_id, start, end)
        if rate_key not in rates:
            try:
                rates[rate_key] = window_rate(types[type_id], start, end)
            except ApiError as exc:  # PriceMissing, UnitMismatch: this type's window waits for staff
                rates[rate_key] = exc
        rate = rates[rate_key]
        if isinstance(rate, ApiError):
            result.failures.append(_failure(project_id, type_id, start, f"{rate.code}: {rate.detail}"))
            continue
        # The window's total is rounded once; an adjustment takes (a reversal gives back) the
        # difference between that and what earlier charges took, so the sum is exactly the total's cost.
        amount = charge_micros(total, rate.rate) - previous_amount
        code = types[type_id].code
        is_first = (project_id, type_id, start) not in charged
        if is_first:
            kind, key = Charge.Kind.REGULAR, regular_key(project_id, code, start)
        else:
            kind = Charge.Kind.LATE_ADJUSTMENT if growth > 0 else Charge.Kind.REVERSAL
            key = adjustment_key(project_id, code, start, previous_quantity, previous_count)
        planned.append(_Planned(
            project_id=project_id, resource_type_id=type_id, window_start=start, window_end=end, kind=kind,
            quantity=growth, window_quantity=total, previously_charged=previous_quantity, rate=rate,
            amount=max(amount, 0) if growth > 0 else min(amount, 0), key=key, record_ids=sorted(record_ids),
        ))
    return planned


def write_charges(*, planned: list[_Planned], run_id: int) -> tuple[int, int]:
    """Transfers and charges of a chunk. Returns (charges, micro-credits) new; reversals count negative.

    Charges (wallet → revenue) and reversals (revenue → wallet) are written in two short transactions,
    each locking its wallets in id order; each transaction holds a transfer with its charge row, and
    a crash between them leaves state the next run derives the rest from.
    """
    reversals = [p for p in planned if p.kind == Charge.Kind.REVERSAL]
    charges = [p for p in planned if p.kind != Charge.Kind.REVERSAL]
    count, credits = _write(planned=charges, run_id=run_id, direction="out")
    reversed_count, reversed_credits = _write(planned=reversals, run_id=run_id, direction="in")
    return count + reversed_count, credits + reversed_credits


def _write(*, planned: list[_Planned], run_id: int, direction: str) -> tuple[int, int]:
    """One transaction: the transfers of `planned` (all one direction) and their charge rows."""
    if not planned:
        return 0, 0
    planned = sorted(planned, key=lambda p: (p.project_id, p.resource_type_id, p.window_start))
    breakdown_json: dict[int, str] = {}
    transfers = []
    for p in planned:
        if p.amount:
            # The charge row (same key) holds the explanation; the transfer points at it by its key.
            transfers.append(ledger.BulkTransfer(project_id=p.project_id, amount=abs(p.amount), idempotency_key=p.key,
                                                 reference="charge"))
    now = timezone.now()
    adapt = connection.ops.adapt_datetimefield_value
    with transaction.atomic():
        if direction == "out":
            transfer_ids = ledger.transfer_many(
                transfers=transfers, direction="out", system_code=Account.System.REVENUE, kind=Transfer.Kind.USAGE,
                reason="usage charge",
            )
        else:
            transfer_ids = ledger.transfer_many(
                transfers=transfers, direction="in", system_code=Account.System.REVENUE, kind=Transfer.Kind.REVERSAL,
                reason="usage credit-back: the window's recorded usage came back lower",
            )
        rows = []
        for p in planned:
            # Only a window that spans a price change needs its segments; otherwise price and rate say it all.
            breakdown = breakdown_json.get(id(p.rate))
            if breakdown is None:
                breakdown = breakdown_json[id(p.rate)] = json.dumps(p.rate.breakdown if len(p.rate.breakdown) > 1 else [])
            rows.append((
                p.project_id, p.resource_type_id, adapt(p.window_start), adapt(p.window_end), p.kind, str(p.quantity),
                p.rate.unit, str(p.window_quantity), str(p.previously_charged), p.rate.price_id, str(p.rate.rate),
                breakdown, p.amount, transfer_ids.get(p.key) if p.amount else None, run_id, p.key,
                _json_ids(p.record_ids), adapt(now),
            ))
        inserted = _insert_charges(rows)
    new = {key for key in inserted}
    return len(new), sum(p.amount for p in planned if p.key in new)


def _json_ids(ids: list[int]) -> str:
    """A JSON array of integer ids (json.dumps per row was a tenth of a 100,000-project run)."""
    return "[" + ",".join(map(str, ids)) + "]"


_CHARGE_COLUMNS = (
    "project_id, resource_type_id, window_start, window_end, kind, quantity, unit, window_quantity, "
    "previously_charged_quantity, price_id, rate, price_breakdown, amount, transfer_id, run_id, idempotency_key, "
    "usage_record_ids, created_at"
)
_PG_TYPES = ("bigint", "bigint", "timestamptz", "timestamptz", "text", "numeric", "text", "numeric", "numeric", "bigint",
             "numeric", "jsonb", "bigint", "bigint", "bigint", "text", "jsonb", "timestamptz")


def _pg_element(value: object, quote: bool) -> str:
    if value is None:
        return "NULL"
    if not quote:
        return str(value)
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _pg_array(values: list, *, quote: bool) -> str:
    """A PostgreSQL array literal as one parameter (much cheaper than the driver dumping each element).

    Most columns of a chunk hold a few distinct values (its window, unit, rate, run): each is
    rendered once.
    """
    distinct = set(values)
    if len(distinct) * 4 < len(values):
        rendered = {v: _pg_element(v, quote) for v in distinct}
        return "{" + ",".join([rendered[v] for v in values]) + "}"
    return "{" + ",".join([_pg_element(v, quote) for v in values]) + "}"


def _insert_charges(rows: list[tuple]) -> list[str]:
    """INSERT … ON CONFLICT (idempotency_key) DO NOTHING; returns the keys actually inserted."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            names = [f"c{i}" for i in range(len(_PG_TYPES))]
            # jsonb arrays travel as text[] and are cast per element.
            unnest = ", ".join(f"%s::{'text' if t == 'jsonb' else t}[]" for t in _PG_TYPES)
            select = ", ".join(f"{n}::jsonb" if t == "jsonb" else n for n, t in zip(names, _PG_TYPES, strict=True))
            arrays = [_pg_array(list(column), quote=t in ("text", "jsonb", "timestamptz"))
                      for column, t in zip(zip(*rows, strict=True), _PG_TYPES, strict=True)]
            # The driver's cursor: Django's debug wrapper would render 100,000-element arrays for its log.
            raw = cursor.cursor
            raw.execute(
                f"INSERT INTO {_CHARGE} ({_CHARGE_COLUMNS}) SELECT {select} FROM unnest({unnest}) AS t({', '.join(names)}) "
                "ON CONFLICT (idempotency_key) DO NOTHING RETURNING idempotency_key",
                arrays,
            )
            return [row[0] for row in raw.fetchall()]
        inserted = []
        placeholders = ", ".join(["%s"] * len(_PG_TYPES))
        for row in rows:
            cursor.execute(f"INSERT INTO {_CHARGE} ({_CHARGE_COLUMNS}) VALUES ({placeholders}) "
                           "ON CONFLICT (idempotency_key) DO NOTHING", row)
            if cursor.rowcount:
                inserted.append(row[15])
        return inserted


def charge_chunk(*, first_project_id: int, last_project_id: int, window_start: datetime, late_since: datetime | None,
                 late_from: datetime, run_id: int) -> ChunkResult:
    """Plan and write one chunk. If the set-based write fails, each project is retried alone so one
    bad project is recorded as a failure and does not stop the others."""
    result = ChunkResult()
    # Create (and cache) the revenue account outside the chunk's transaction: an id cached from a
    # transaction that later rolls back would point at nothing.
    ledger.system_account_id(Account.System.REVENUE)
    planned = plan_chunk(first_project_id=first_project_id, last_project_id=last_project_id,
                         window_start=window_start, late_since=late_since, late_from=late_from, result=result)
    try:
        result.charges, result.credits = write_charges(planned=planned, run_id=run_id)
        result.projects = {p.project_id for p in planned}
    except Exception as exc:
        log.warning("billing chunk %s-%s failed as a batch (%s); charging project by project",
                    first_project_id, last_project_id, exc)
        by_project: dict[int, list[_Planned]] = defaultdict(list)
        for p in planned:
            by_project[p.project_id].append(p)
        for project_id, items in sorted(by_project.items()):
            try:
                charges, credits = write_charges(planned=items, run_id=run_id)
            except Exception as project_exc:
                log.exception("billing of project %s failed", project_id)
                result.failures.append(_failure(project_id, None, window_start, f"{type(project_exc).__name__}: {project_exc}"))
                continue
            result.charges += charges
            result.credits += credits
            result.projects.add(project_id)
    return result
