"""One row as one canonical JSON object, and back.

Canonical: keys sorted, no spaces, UTF-8 as is, so the same row always gives the same bytes and a
table's checksum (sha256 over its canonical rows, one per line) is the same whichever backend wrote it.
Integers stay JSON integers (money is integer micro-credits), datetimes are ISO 8601 in UTC with
their offset, and a field type with no exact encoding here (float, decimal, binary) is refused, not guessed.
"""

import json
from datetime import UTC, date, datetime, time
from typing import Any

from django.db import models

# Internal types written as the JSON value the database gave (int, str, bool, None, or JSON).
PLAIN_TYPES = frozenset({
    "AutoField", "BigAutoField", "SmallAutoField", "IntegerField", "BigIntegerField", "SmallIntegerField",
    "PositiveIntegerField", "PositiveBigIntegerField", "PositiveSmallIntegerField", "BooleanField",
    "CharField", "TextField", "SlugField", "EmailField", "URLField", "GenericIPAddressField", "JSONField",
})
# Written as ISO 8601 text; read back with the field's own to_python.
TEXT_TYPES = frozenset({"DateTimeField", "DateField", "TimeField", "UUIDField"})


class Unencodable(TypeError):
    """A field of a type that has no exact JSON encoding here."""


def column_type(field: models.Field) -> str:
    """The internal type of the stored value (a foreign key stores its target's)."""
    return field.target_field.get_internal_type() if field.is_relation else field.get_internal_type()


def check_encodable(field: models.Field) -> None:
    kind = column_type(field)
    if kind not in PLAIN_TYPES and kind not in TEXT_TYPES:
        raise Unencodable(f"{field.model._meta.label}.{field.name} is a {kind}: the ledger export has no exact "
                          "encoding for it (add one in creditservice/ledger_io/encoding.py)")


def encode_value(field: models.Field, value: Any) -> Any:
    if column_type(field) == "JSONField":
        return value  # already JSON (floats inside a payload are the payload's own)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise Unencodable(f"naive datetime {value.isoformat()}: the export writes times with their offset")
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, float):
        raise Unencodable(f"float {value!r} in a column: money is integer micro-credits")
    if value is not None and not isinstance(value, int | str | bool | dict | list):
        return str(value)  # UUID
    return value


def canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def decode_value(field: models.Field, value: Any) -> Any:
    """The JSON value as the Python value the field stores."""
    if value is not None and column_type(field) in TEXT_TYPES:
        target = field.target_field if field.is_relation else field
        return target.to_python(value)
    return value
