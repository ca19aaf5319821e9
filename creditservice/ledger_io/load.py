"""Load an export into an empty database in one transaction, verified before it commits.

Refused, with one line that says why and nothing written: a file that is not an export, of a newer
format version, truncated, edited (a table's rows no longer match the header's sha256 or count), of
another schema (a table or column differs: export and import with the same code and migrations), a
target that is not migrated or not empty, or books that fail the ledger's invariants once loaded.

"Empty" allows what migrations seed on a fresh database (seeded_rows: system accounts, the shipped
resource types and their prices): those rows are deleted in the same transaction and the file's rows,
with the source's ids that other rows point at, take their place.

Rows go in with plain INSERTs in batches: no model save(), no signal, no auto_now; cached columns
(wallet balance, reserved) are written as stored, and the invariant check then proves them.
"""

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO

from django.core.management.color import no_style
from django.db import connection, models, transaction
from django.db.models import Q

from quotas.selectors import no_stuck_holds
from wallets.selectors import extra_checks, ledger_check

from . import tables
from .encoding import canonical, decode_value
from .export import FORMAT, FORMAT_VERSION, RowCounter, TableDigest, columns_of

BATCH_ROWS = 1000  # rows per INSERT round trip
MAX_LINE_CHARS = 16 * 1024 * 1024  # a row or header line; the largest rows are Stripe event payloads


class LedgerImportRefused(Exception):
    """The file or the target is not fit for an import; nothing was written."""


@dataclass
class TablePlan:
    model: type[models.Model]
    expected_rows: int
    expected_sha256: str
    digest: TableDigest
    fields: list[models.Field] = field(default_factory=list)


def seeded_rows() -> dict[str, Q]:
    """The rows a freshly migrated database holds, by model label: data migrations ship the system
    accounts, the resource types (quotas, gateway) and their prices. Every other included table must be
    empty, users too, so nobody can have signed in and added a type or a price of their own: these rows
    are what migrations shipped, and the source's own (with the ids its rows point at) replace them."""
    return {
        "wallets.Account": Q(kind="system"),  # balance 0 and no transfers on an empty target (CHECK)
        "quotas.ResourceType": Q(pk__isnull=False),  # every row
        "metering.Price": Q(pk__isnull=False),
    }


def ledger_import(*, source: IO[str], progress: Callable[[int, int], None] | None = None) -> dict[str, int]:
    """Load the export read from `source` (text); return rows loaded per table."""
    tables.validate()
    lines = _numbered_lines(source)
    header = _header(next(lines, (1, "")))
    plans = _plans(header)
    _require_migrated(plans)
    counter = RowCounter(total=header["total_rows"], report=progress)
    with transaction.atomic():
        _require_empty([p.model for p in plans])
        _clear_seeded([p.model for p in plans])
        _load(lines, plans, counter)
        _reset_sequences([p.model for p in plans])
        drifts = _ledger_drifts()
        if drifts:
            raise LedgerImportRefused(f"the imported books fail the ledger check ({len(drifts)} drift(s)), nothing "
                                      f"was written; first: {drifts[0]}")
    return {p.digest.table: p.digest.rows for p in plans}


def _numbered_lines(source: IO[str]) -> Iterator[tuple[int, str]]:
    number = 0
    while True:
        number += 1
        try:
            line = source.readline(MAX_LINE_CHARS + 1)
        except UnicodeDecodeError as error:
            raise LedgerImportRefused(f"line {number} is not UTF-8: not a ledger export") from error
        if not line:
            return
        if len(line) > MAX_LINE_CHARS:
            raise LedgerImportRefused(f"line {number} is longer than {MAX_LINE_CHARS} characters: not a ledger export")
        yield number, line


def _header(numbered: tuple[int, str]) -> dict:
    _, line = numbered
    try:
        header = json.loads(line)
    except (ValueError, RecursionError):  # RecursionError: nested too deep for the decoder
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise LedgerImportRefused("not a creditservice ledger export: its first line is not an export header")
    version = header.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise LedgerImportRefused(f"the export header has no valid format version ({version!r})")
    if version > FORMAT_VERSION:
        raise LedgerImportRefused(f"the export is format version {version}, newer than this installation reads "
                                  f"({FORMAT_VERSION}): import it with the version that wrote it")
    if not isinstance(header.get("tables"), list) or not isinstance(header.get("total_rows"), int):
        raise LedgerImportRefused("the export header is damaged: no table list or row total")
    return header


def _plans(header: dict) -> list[TablePlan]:
    """One plan per table in the file's order, checked against this installation's tables."""
    ours = {m._meta.db_table: m for m in tables.included_models()}
    plans: list[TablePlan] = []
    seen: set[str] = set()
    for entry in header["tables"]:
        name = entry.get("table") if isinstance(entry, dict) else None
        if name not in ours or name in seen:
            raise LedgerImportRefused(f"the export has table {name!r}, which this installation does not import "
                                      "(export and import with the same code and migrations)")
        model = ours[name]
        columns = columns_of(model)
        if entry.get("columns") != columns:
            raise LedgerImportRefused(f"table {name}: the export's columns {entry.get('columns')} differ from this "
                                      f"database's {columns} (export and import with the same code and migrations)")
        rows, sha256 = entry.get("rows"), entry.get("sha256")
        if not isinstance(rows, int) or rows < 0 or not isinstance(sha256, str):
            raise LedgerImportRefused(f"table {name}: the export header has no valid row count or sha256")
        later = {m._meta.label for m in ours.values() if m._meta.db_table not in seen} - {model._meta.label}
        if tables.dependencies(model) & later:
            raise LedgerImportRefused(f"table {name} comes before a table it refers to: not this format's order")
        seen.add(name)
        plans.append(TablePlan(model=model, expected_rows=rows, expected_sha256=sha256,
                               digest=TableDigest(table=name, model=model._meta.label, columns=columns),
                               fields=list(model._meta.concrete_fields)))
    missing = sorted(set(ours) - seen)
    if missing:
        raise LedgerImportRefused(f"the export lacks tables {missing} (export and import with the same code and migrations)")
    if sum(p.expected_rows for p in plans) != header["total_rows"]:
        raise LedgerImportRefused("the export header is damaged: its table row counts do not add up to its total")
    return plans


def _require_migrated(plans: list[TablePlan]) -> None:
    existing = set(connection.introspection.table_names())
    absent = [p.digest.table for p in plans if p.digest.table not in existing]
    if absent:
        raise LedgerImportRefused(f"the target database is not migrated (no table {absent[0]}): run manage.py migrate first")


def _require_empty(exported: list[type[models.Model]]) -> None:
    seeded = seeded_rows()
    for model in exported:
        rows = model._base_manager.all()
        if model._meta.label in seeded:
            rows = rows.exclude(seeded[model._meta.label])
        if rows.exists():
            raise LedgerImportRefused(f"the target database is not empty: {model._meta.db_table} has rows (import "
                                      "only into a freshly migrated database)")


def _clear_seeded(exported: list[type[models.Model]]) -> None:
    """Delete the migration-seeded rows, referring models first; the file brings the source's own."""
    seeded = seeded_rows()
    for model in reversed(exported):
        if model._meta.label in seeded:
            model._base_manager.filter(seeded[model._meta.label]).delete()


def _load(lines: Iterator[tuple[int, str]], plans: list[TablePlan], counter: RowCounter) -> None:
    position = 0  # index into plans of the table whose rows come now
    batch: list[tuple] = []
    natural_ids: dict = {}
    for number, line in lines:
        table, row = _row(number, line)
        while position < len(plans) and plans[position].digest.table != table:
            _flush(plans[position], batch)
            _finish(plans[position])
            position += 1
        if position == len(plans):
            raise LedgerImportRefused(f"line {number}: a row of {table!r} out of the header's table order")
        plan = plans[position]
        if set(row) != set(plan.digest.columns):
            raise LedgerImportRefused(f"line {number}: a row of {table} whose columns differ from the header's")
        plan.digest.add(canonical(row))
        batch.append(_db_values(plan, row, natural_ids, number))
        counter.tick()
        if len(batch) >= BATCH_ROWS:
            _flush(plan, batch)
    for plan in plans[position:]:
        _flush(plan, batch)
        _finish(plan)


def _row(number: int, line: str) -> tuple[str, dict]:
    try:
        item = json.loads(line)
    except (ValueError, RecursionError) as error:
        raise LedgerImportRefused(f"line {number} is not JSON: the file is truncated or damaged") from error
    if not isinstance(item, dict) or not isinstance(item.get("row"), dict) or not isinstance(item.get("table"), str):
        raise LedgerImportRefused(f"line {number} is not a row of a ledger export")
    return item["table"], item["row"]


def _db_values(plan: TablePlan, row: dict, natural_ids: dict, number: int) -> tuple:
    by_natural_key = tables.natural_key_fields(plan.model)
    values = []
    for f in plan.fields:
        value = row[f.attname]
        if f.attname in by_natural_key and value is not None:
            value = _natural_id(by_natural_key[f.attname], value, natural_ids, number)
        else:
            value = decode_value(f, value)
        values.append(f.get_db_prep_save(value, connection))
    return tuple(values)


def _natural_id(related: type[models.Model], key, natural_ids: dict, number: int) -> int:
    if related not in natural_ids:
        natural_ids[related] = {tuple(obj.natural_key()): obj.pk for obj in related._base_manager.all()}
    found = natural_ids[related].get(tuple(key) if isinstance(key, list) else None)
    if found is None:
        raise LedgerImportRefused(f"line {number}: {related._meta.label} {key!r} does not exist in the target database")
    return found


def _flush(plan: TablePlan, batch: list[tuple]) -> None:
    if not batch:
        return
    quote = connection.ops.quote_name
    columns = ", ".join(quote(c) for c in plan.digest.columns)
    placeholders = ", ".join(["%s"] * len(plan.digest.columns))
    with connection.cursor() as cursor:
        cursor.executemany(f"INSERT INTO {quote(plan.digest.table)} ({columns}) VALUES ({placeholders})", batch)
    batch.clear()


def _finish(plan: TablePlan) -> None:
    """A table's rows are all in: they must be the header's, to the row and the byte."""
    digest = plan.digest
    if digest.rows != plan.expected_rows:
        raise LedgerImportRefused(f"table {digest.table}: {digest.rows} rows in the file, its header says "
                                  f"{plan.expected_rows}: the file is truncated or was edited")
    if digest.sha256.hexdigest() != plan.expected_sha256:
        raise LedgerImportRefused(f"table {digest.table}: its rows do not match the header's sha256: the file was "
                                  "edited or damaged")


def _reset_sequences(exported: list[type[models.Model]]) -> None:
    """PostgreSQL: move each id sequence past the imported ids. SQLite needs nothing: its AUTOINCREMENT
    tables raise sqlite_sequence to an explicit id on insert (Django's sequence_reset_sql is empty there)."""
    statements = connection.ops.sequence_reset_sql(no_style(), exported)
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)


def _ledger_drifts() -> list[str]:
    """The ledger check (wallets.selectors: I1-I3, and the registered checks such as reserved = pending
    holds), inside this transaction. Left out: no_stuck_holds, which reports the expiry task's lag
    (it was stopped for the move), not the books; its first run after the cut-over releases those holds."""
    drifts = list(ledger_check().drifts)
    for check in extra_checks:
        if check is not no_stuck_holds:
            drifts.extend(check())
    return drifts
