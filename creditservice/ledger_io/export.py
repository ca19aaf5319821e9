"""Write the ledger as JSON Lines from one consistent read snapshot.

Line 1 is the header (format, version, source backend, time, and per table its columns, row count and
sha256 over its canonical rows); then one `{"table": ..., "row": {...}}` line per row, tables in
dependency order (tables.included_models), rows by primary key. The rows go to a temporary file first,
because the header that names their checksums comes before them.
"""

import hashlib
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO

from django.db import connection, models
from django.utils import timezone

from wallets.selectors import read_snapshot

from . import tables
from .encoding import canonical, check_encodable, encode_value

FORMAT = "creditservice-ledger"
FORMAT_VERSION = 1
CHUNK_ROWS = 2000  # rows fetched per round trip


@dataclass
class TableDigest:
    table: str
    model: str
    columns: list[str]
    rows: int = 0
    sha256: "hashlib._Hash" = field(default_factory=hashlib.sha256)

    def add(self, row_text: str) -> None:
        self.rows += 1
        self.sha256.update(row_text.encode() + b"\n")

    def as_header(self) -> dict:
        return {"table": self.table, "model": self.model, "columns": self.columns, "rows": self.rows,
                "sha256": self.sha256.hexdigest()}


def columns_of(model: type[models.Model]) -> list[str]:
    return [f.attname for f in model._meta.concrete_fields]


def ledger_export(*, out: IO[str], progress: Callable[[int, int], None] | None = None) -> dict:
    """Write every included table to `out` (text); return the header written."""
    tables.validate()
    exported = tables.included_models()
    for model in exported:
        for f in model._meta.concrete_fields:
            check_encodable(f)
    with tempfile.TemporaryFile("w+", encoding="utf-8") as body, read_snapshot():
        total = sum(model._base_manager.count() for model in exported)
        natural_keys = _natural_keys(exported)
        counter = RowCounter(total=total, report=progress)
        digests = [_write_table(model, body, natural_keys, counter) for model in exported]
        header = {
            "format": FORMAT, "version": FORMAT_VERSION, "source_backend": connection.vendor,
            "created_at": timezone.now().isoformat(), "total_rows": total,
            "tables": [d.as_header() for d in digests],
        }
        if sum(d.rows for d in digests) != total:
            raise RuntimeError("row counts changed inside one read snapshot")  # assert the snapshot held
        out.write(canonical(header) + "\n")
        body.seek(0)
        shutil.copyfileobj(body, out)
    return header


@dataclass
class RowCounter:
    """Rows done so far, reported every CHUNK_ROWS rows and at the end (a progress bar's feed)."""

    total: int
    report: Callable[[int, int], None] | None
    done: int = 0

    def tick(self) -> None:
        self.done += 1
        if self.report is not None and (self.done % CHUNK_ROWS == 0 or self.done == self.total):
            self.report(self.done, self.total)


def _write_table(model, body: IO[str], natural_keys: dict, counter: RowCounter) -> TableDigest:
    fields = model._meta.concrete_fields
    digest = TableDigest(table=model._meta.db_table, model=model._meta.label, columns=columns_of(model))
    by_natural_key = tables.natural_key_fields(model)
    rows = model._base_manager.order_by("pk").values_list(*digest.columns).iterator(chunk_size=CHUNK_ROWS)
    for values in rows:
        row = {}
        for f, value in zip(fields, values, strict=True):
            if f.attname in by_natural_key and value is not None:
                row[f.attname] = natural_keys[by_natural_key[f.attname]][value]
            else:
                row[f.attname] = encode_value(f, value)
        row_text = canonical(row)
        digest.add(row_text)
        body.write(canonical({"table": digest.table, "row": row}) + "\n")
        counter.tick()
    return digest


def _natural_keys(exported) -> dict:
    """related model -> {id: natural key as a list} for every model referred to by natural key."""
    related = {r for model in exported for r in tables.natural_key_fields(model).values()}
    return {r: {obj.pk: list(obj.natural_key()) for obj in r._base_manager.all()} for r in related}
