"""The one reader of JSON request bodies (REST_FRAMEWORK DEFAULT_PARSER_CLASSES): bounded before it is parsed.

DRF's JSONParser reads a body of any size and hands it to json.load, whose recursion on
`[[[[…]]]]` tens of thousands deep raised RecursionError (a 500): here that is a 400. It also decodes with whatever
charset the Content-Type names and keeps the last of a key given twice ({"amount": "1", "amount":
"1000"}), so what was signed, logged or fingerprinted could differ from what was used. Here a body
is at most MAX_BODY_BYTES, UTF-8 (RFC 8259), one object nested at most MAX_DEPTH deep, with each key
once and no NaN or Infinity; anything else is a 4xx in the error shape before any view sees it.
"""

import json
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from .errors import PayloadTooLarge

# The largest request body: a full usage batch (1,000 events with 200-character ids) is ~450 KB.
MAX_BODY_BYTES = 1024 * 1024
# Deeper than any body of this API (a usage batch is 3 levels), far below Python's recursion limit.
MAX_DEPTH = 32

def deeper_than(data: Any, limit: int) -> bool:
    """Whether parsed JSON nests arrays and objects more than `limit` levels (the body itself is level 1).
    After parsing, not before: a regex pass over the text cost ~10 ms of a 1,000-event batch, and json
    refuses a body nested past the recursion limit by itself (RecursionError, answered below)."""
    if not isinstance(data, (dict, list)):
        return False
    stack = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limit:
            return True
        for child in value.values() if isinstance(value, dict) else value:
            if isinstance(child, (dict, list)):
                stack.append((child, depth + 1))
    return False


def _object_without_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"the key {key!r} is given more than once")
        result[key] = value
    return result


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def loads(raw: bytes) -> dict[str, Any]:
    """raw as a JSON object, or ParseError (400) saying why not; the caller has checked its size."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ParseError(f"the body is not UTF-8 (byte {exc.start})") from None
    too_deep = ParseError(f"the body nests arrays and objects more than {MAX_DEPTH} levels deep")
    try:
        data = json.loads(text, object_pairs_hook=_object_without_duplicate_keys, parse_constant=_refuse_constant)
    except RecursionError:
        raise too_deep from None
    except ValueError as exc:  # json.JSONDecodeError is one
        raise ParseError(f"the body is not JSON: {exc}") from None
    if deeper_than(data, MAX_DEPTH):
        raise too_deep
    if not isinstance(data, dict):
        # Every body of this API is an object; `null` was taken for "no body" (a commit of the whole hold).
        raise ParseError("the body must be a JSON object ({...})")
    return data


class BoundedJSONParser(JSONParser):
    """JSONParser with the bounds above; 413 payload_too_large for a body over MAX_BODY_BYTES."""

    def parse(self, stream, media_type=None, parser_context=None) -> Any:
        request = (parser_context or {}).get("request")
        declared = request.META.get("CONTENT_LENGTH", "") if request is not None else ""
        if declared.isascii() and declared.isdigit() and int(declared) > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"a request body is at most {MAX_BODY_BYTES} bytes")
        raw = stream.read(MAX_BODY_BYTES + 1) if stream is not None else b""
        if len(raw) > MAX_BODY_BYTES:
            raise PayloadTooLarge(f"a request body is at most {MAX_BODY_BYTES} bytes")
        return loads(raw)
