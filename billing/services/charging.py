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
from functools import lru_cache
from operator import attrgetter

from django.db import connection, transaction
from django.db.models import Count, Sum
from django.utils import timezone

from creditservice.lib.errors import ApiError
from creditservice.lib.money import MAX_AMOUNT_MICROS, charge_micros, format_amount, format_micros
from creditservice.lib.pg_arrays import unnest_select
from creditservice.lib.queries import fetch_rows
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


def adjustment_key(project_id: int, resource_code: str, window_start: datetime, already_charged: int,
                   charges_so_far: int) -> str:
    # The state is the key: two runs that saw the same state compute the same adjustment and collide
    # on it; any later change is a new state and a new key. The count of the window's charges is part
    # of it because the quantity alone can come back (3 → 2 → 3 → 2 would repeat a reversal's key).
    # already_charged is micro-units, written as the shortest decimal ("2.5"), as keys always were.
    return f"{regular_key(project_id, resource_code, window_start)}:n{charges_so_far}:adj:{format_micros(already_charged)}"


@dataclass
class ChunkResult:
    charges: int = 0
    credits: int = 0  # micro-credits
    projects: set[int] = field(default_factory=set)
    # Charged projects that may now be unfunded: the lifecycle checks these, not the whole chunk.
    maybe_unfunded: set[int] = field(default_factory=set)
    failures: list[dict] = field(default_factory=list)


@dataclass(slots=True)
class _Planned:
    project_id: int
    resource_type_id: int
    window_start: datetime
    window_end: datetime
    kind: str
    # Micro-units of the billing unit.
    quantity: int
    window_quantity: int
    previously_charged: int
    rate: WindowRate
    amount: int
    key: str
    record_ids: list[int]


def _failure(project_id: int, resource_type_id: int | None, window_start: datetime | None, reason: str) -> dict:
    return {"project_id": project_id, "resource_type_id": resource_type_id,
            "window_start": window_start.isoformat() if window_start else None, "reason": reason[:500]}


def _usage_groups(*, first_project_id: int, last_project_id: int, window_start: datetime,
                  late_since: datetime | None, late_from: datetime) -> dict[tuple, list]:
    """(project, type, window) → [window_end, total quantity (micro-units), record ids] for the chunk's projects.

    The run's window in full, plus earlier windows (from late_from) with a record written since
    late_since: a late event or a re-collection after those windows were billed.
    """
    in_chunk = UsageRecord.objects.filter(project_id__gte=first_project_id, project_id__lte=last_project_id)
    groups: dict[tuple, list] = {}
    # The run's own window is most of the rows: its bounds are known, so they are not read per row
    # (turning 200,000 timestamps into datetimes is a good part of a 100,000-project run).
    window_end = window_start + windows.window_length()
    for record_id, project_id, type_id, quantity in fetch_rows(
            in_chunk.filter(window_start=window_start).values_list("id", "project_id", "resource_type_id", "quantity")):
        group = groups.get((project_id, type_id, window_start))
        if group is None:
            groups[(project_id, type_id, window_start)] = [window_end, quantity, [record_id]]
        else:
            group[1] += quantity
            group[2].append(record_id)
    if late_since is not None:
        changed = set(
            in_chunk.filter(window_start__gte=late_from, window_start__lt=window_start, updated_at__gte=late_since)
            .values_list("project_id", "resource_type_id", "window_start")
        )
        if changed:
            late = in_chunk.filter(window_start__in={key[2] for key in changed}, project_id__in={key[0] for key in changed})
            for record_id, project_id, type_id, start, end, quantity in late.values_list(
                    "id", "project_id", "resource_type_id", "window_start", "window_end", "quantity"):
                if (project_id, type_id, start) in changed:
                    group = groups.setdefault((project_id, type_id, start), [end, 0, []])
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
    costs: dict[tuple, int] = {}  # (total, rate) → micro-credits: many windows hold the same quantity
    planned: list[_Planned] = []
    for group_key, (end, total, record_ids) in groups.items():
        project_id, type_id, start = group_key
        previous = charged.get(group_key)
        growth = total - previous[0] if previous else total
        if growth == 0:
            continue
        rate_key = (type_id, start, end)
        rate = rates.get(rate_key)
        if rate is None:
            try:
                rate = rates[rate_key] = window_rate(types[type_id], start, end)
            except ApiError as exc:  # PriceMissing, UnitMismatch: this type's window waits for staff
                rate = rates[rate_key] = exc
        if isinstance(rate, ApiError):
            result.failures.append(_failure(project_id, type_id, start, f"{rate.code}: {rate.detail}"))
            continue
        # The window's total is rounded once; an adjustment takes (a reversal gives back) the
        # difference between that and what earlier charges took, so the sum is exactly the total's cost.
        cost = costs.get((total, rate.rate))
        if cost is None:
            cost = costs[(total, rate.rate)] = charge_micros(total, rate.rate)
        if cost > MAX_AMOUNT_MICROS:
            # quantity × rate beyond one amount (a bogus price or usage): it would overflow the charge and
            # transfer columns. Owed and visible to staff, like a missing price; the other windows go on.
            result.failures.append(_failure(project_id, type_id, start, (
                f"amount_limit_exceeded: {format_amount(cost)} credits for this window is more than one charge "
                f"may take ({format_amount(MAX_AMOUNT_MICROS)})")))
            continue
        code = types[type_id].code
        if previous is None:
            kind, key, previous_quantity, amount = Charge.Kind.REGULAR, regular_key(project_id, code, start), 0, cost
        else:
            previous_quantity, previous_amount, previous_count = previous
            kind = Charge.Kind.LATE_ADJUSTMENT if growth > 0 else Charge.Kind.REVERSAL
            key = adjustment_key(project_id, code, start, previous_quantity, previous_count)
            amount = cost - previous_amount
        amount = max(amount, 0) if growth > 0 else min(amount, 0)
        planned.append(_Planned(
            project_id, type_id, start, end, kind, growth, total, previous_quantity, rate, amount, key,
            record_ids if len(record_ids) == 1 else sorted(record_ids),
        ))
    return planned


@dataclass
class Written:
    charges: int = 0
    credits: int = 0  # micro-credits; reversals count negative
    maybe_unfunded: set[int] = field(default_factory=set)


def write_charges(*, planned: list[_Planned], run_id: int, known_new: bool = False) -> Written:
    """Transfers and charges of a chunk: what was new, and which projects may now be unfunded.

    Charges (wallet → revenue) and reversals (revenue → wallet) are written in two short transactions,
    each locking its wallets in id order; each transaction holds a transfer with its charge row, and
    a crash between them leaves state the next run derives the rest from.
    known_new: planned moments ago from the committed charges, so no key can be in the ledger unless
    another worker wrote it since (the batch then fails and is retried project by project).
    """
    written = Written()
    for direction, items in (("out", [p for p in planned if p.kind != Charge.Kind.REVERSAL]),
                             ("in", [p for p in planned if p.kind == Charge.Kind.REVERSAL])):
        _write(planned=items, run_id=run_id, direction=direction, into=written, known_new=known_new)
    return written


_PLAN_ORDER = attrgetter("project_id", "resource_type_id", "window_start")


def _write(*, planned: list[_Planned], run_id: int, direction: str, into: Written, known_new: bool) -> None:
    """One transaction: the transfers of `planned` (all one direction) and their charge rows."""
    if not planned:
        return
    planned = sorted(planned, key=_PLAN_ORDER)
    breakdown_json: dict[int, str] = {}
    # The charge row (same key) holds the explanation; the transfer points at it by its key.
    # A charge draws from the grants of its resource type first (wallets/ledger/grants.py).
    codes = dict(ResourceType.objects.filter(id__in={p.resource_type_id for p in planned}).values_list("id", "code"))
    transfers = [ledger.BulkTransfer(p.project_id, abs(p.amount), p.key, "charge", resource_type=codes[p.resource_type_id])
                 for p in planned if p.amount]
    now = timezone.now()
    adapt = connection.ops.adapt_datetimefield_value
    with transaction.atomic():
        if direction == "out":
            moved = ledger.transfer_many(
                transfers=transfers, direction="out", system_code=Account.System.REVENUE, kind=Transfer.Kind.USAGE,
                reason="usage charge", known_new=known_new,
            )
        else:
            moved = ledger.transfer_many(
                transfers=transfers, direction="in", system_code=Account.System.REVENUE, kind=Transfer.Kind.REVERSAL,
                reason="usage credit-back: the window's recorded usage came back lower", known_new=known_new,
            )
        transfer_ids = moved.ids
        rows = []
        for p in planned:
            # Only a window that spans a price change needs its segments; otherwise price and rate say it all.
            breakdown = breakdown_json.get(id(p.rate))
            if breakdown is None:
                breakdown = breakdown_json[id(p.rate)] = json.dumps(p.rate.breakdown if len(p.rate.breakdown) > 1 else [])
            rows.append((
                p.project_id, p.resource_type_id, adapt(p.window_start), adapt(p.window_end), p.kind, p.quantity,
                p.rate.unit, p.window_quantity, p.previously_charged, p.rate.price_id, p.rate.rate,
                breakdown, p.amount, transfer_ids.get(p.key) if p.amount else None, run_id, p.key,
                _json_ids(p.record_ids), adapt(now),
            ))
        new = set(_insert_charges(rows))
    into.charges += len(new)
    into.credits += sum(p.amount for p in planned if p.key in new)
    # Wallets this batch left at or below zero, and projects whose wallet it did not move (a charge
    # that rounds to nothing, or one an interrupted attempt already wrote): their state is unknown here.
    into.maybe_unfunded.update(moved.unfunded)
    into.maybe_unfunded.update(p.project_id for p in planned if not p.amount or p.key not in new)


def _json_ids(ids: list[int]) -> str:
    """A JSON array of integer ids (json.dumps per row was a tenth of a 100,000-project run)."""
    return f"[{ids[0]}]" if len(ids) == 1 else "[" + ",".join(map(str, ids)) + "]"


_CHARGE_COLUMNS = (
    "project_id, resource_type_id, window_start, window_end, kind, quantity, unit, window_quantity, "
    "previously_charged_quantity, price_id, rate, price_breakdown, amount, transfer_id, run_id, idempotency_key, "
    "usage_record_ids, created_at"
)
_PG_TYPES = ("bigint", "bigint", "timestamptz", "timestamptz", "text", "bigint", "text", "bigint", "bigint", "bigint",
             "bigint", "jsonb", "bigint", "bigint", "bigint", "text", "jsonb", "timestamptz")


def _insert_charges(rows: list[tuple]) -> list[str]:
    """INSERT … ON CONFLICT (idempotency_key) DO NOTHING; returns the keys actually inserted."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            select, params = unnest_select(list(zip(_PG_TYPES, zip(*rows, strict=True), strict=True)))
            # The driver's cursor: Django's debug wrapper would render 100,000-element arrays for its log.
            raw = cursor.cursor
            raw.execute(f"INSERT INTO {_CHARGE} ({_CHARGE_COLUMNS}) {select} "
                        "ON CONFLICT (idempotency_key) DO NOTHING RETURNING idempotency_key", params,
                        prepare=False)  # the statement's shape changes with which columns vary
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
        written = write_charges(planned=planned, run_id=run_id, known_new=True)
        result.charges, result.credits, result.maybe_unfunded = written.charges, written.credits, written.maybe_unfunded
        result.projects = {p.project_id for p in planned}
    except Exception as exc:
        log.warning("billing chunk %s-%s failed as a batch (%s); charging project by project",
                    first_project_id, last_project_id, exc)
        by_project: dict[int, list[_Planned]] = defaultdict(list)
        for p in planned:
            by_project[p.project_id].append(p)
        for project_id, items in sorted(by_project.items()):
            try:
                written = write_charges(planned=items, run_id=run_id)
            except Exception as project_exc:
                log.exception("billing of project %s failed", project_id)
                result.failures.append(_failure(project_id, None, window_start, f"{type(project_exc).__name__}: {project_exc}"))
                continue
            result.charges += written.charges
            result.credits += written.credits
            result.maybe_unfunded |= written.maybe_unfunded
            result.projects.add(project_id)
    return result
