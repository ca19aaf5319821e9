"""Text from callers: the one rule for every string the API stores or looks up.

A string is refused when it is longer than its column or holds a control character (U+0000–U+001F,
U+007F–U+009F) or a lone surrogate. PostgreSQL cannot store NUL in text and no database can encode
a lone surrogate (JSON's "\\ud800") as UTF-8, so these would otherwise fail as a 500 inside the
write; the other control characters have no place in a name, a reason or a key, and a line break
or an escape in one would forge lines in a statement or a log.
"""

import re
from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

# Category Cc (C0, DEL, C1) and Cs (surrogates, which only a JSON \u escape can produce).
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")


class TextError(ValueError):
    """A string that may not be stored as it is."""


def forbidden_character(value: str) -> str | None:
    """The first character no text may hold, or None."""
    found = _FORBIDDEN.search(value)
    return found.group() if found else None


def describe(character: str) -> str:
    return f"U+{ord(character):04X}"


def clean_text(value: object, *, max_length: int, allow_blank: bool = False) -> str:
    """value if it is a string of at most max_length characters with no control character; else TextError.

    Nothing is stripped or changed: what is stored is what was sent, or it is refused.
    """
    if not isinstance(value, str):
        raise TextError("must be a string")
    if len(value) > max_length:
        raise TextError(f"must be at most {max_length} characters")
    bad = forbidden_character(value)
    if bad is not None:
        raise TextError(f"must not contain control characters (found {describe(bad)})")
    if not allow_blank and not value.strip():
        raise TextError("must not be blank")
    return value


# What no backend's text or JSON column can hold: NUL (PostgreSQL) and lone surrogates (UTF-8).
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def storable_json(value: Any) -> Any:
    """A JSON document with NUL and lone surrogates in its strings and keys replaced by U+FFFD.

    For documents kept as a third party sent them (a signed Stripe event, verified on its raw body
    first): refusing one would make its sender redeliver it forever, and these characters carry no
    meaning a reader of the document needs.
    """
    if isinstance(value, str):
        return _UNSTORABLE.sub("\ufffd", value)
    if isinstance(value, list):
        return [storable_json(item) for item in value]
    if isinstance(value, dict):
        return {storable_json(key): storable_json(item) for key, item in value.items()}
    return value


def no_control_characters(value: str) -> None:
    """A DRF validator (for fields such as URLField that are not PlainTextField)."""
    bad = forbidden_character(value)
    if bad is not None:
        raise serializers.ValidationError(f"must not contain control characters (found {describe(bad)})")


@extend_schema_field(OpenApiTypes.STR)
class PlainTextField(serializers.CharField):
    """A CharField with clean_text's rule: max_length is required (it is the column's)."""

    def __init__(self, *, max_length: int, **kwargs: Any):
        super().__init__(max_length=max_length, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        no_control_characters(value)
        return value
