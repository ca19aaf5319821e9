"""The one reader of JSON request bodies (REST_FRAMEWORK DEFAULT_PARSER_CLASSES): bounded before it is parsed.

DRF's JSONParser reads a body of any size and hands it to json.load, whose recursion on
`[[[[…]]]]` tens of thousands deep raised RecursionError (a 500). It also decodes with whatever
charset the Content-Type names and keeps the last of a key given twice ({"amount": "1", "amount":
"1000"}), so what was signed, logged or fingerprinted could differ from what was used. Here a body
is at most MAX_BODY_BYTES, UTF-8 (RFC 8259), one object nested at most MAX_DEPTH deep, with each key
once and no NaN or Infinity; anything else is a 4xx in the error shape before any view sees it.
"""

import json
import re
from typing import Any

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

from .errors import PayloadTooLarge

# The largest request body: a full usage batch (1,000 events with 200-character ids) is ~450 KB.
MAX_BODY_BYTES = 1024 * 1024
# Deeper than any body of this API (a usage batch is 3 levels), far below Python's recursion limit.
MAX_DEPTH = 32

# A JSON string (its escapes included): removed before the brackets are counted, so "[[[" in a string is text.
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_A_BRACKET = re.compile(r"[^\[\]{}]+")


def nesting_depth(text: str) -> int:
    """How deep the arrays and objects of a JSON text nest (0 for a scalar)."""
    brackets = _NOT_A_BRACKET.sub("", _STRING.sub("", text))
    depth = deepest = 0
    for bracket in brackets:
        if bracket in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > MAX_DEPTH:
                    break  # no need to count the rest of a hostile body
        else:
            depth -= 1
    return deepest


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
    if text.count("[") + text.count("{") > MAX_DEPTH and nesting_depth(text) > MAX_DEPTH:
        raise ParseError(f"the body nests arrays and objects more than {MAX_DEPTH} levels deep")
    try:
        data = json.loads(text, object_pairs_hook=_object_without_duplicate_keys, parse_constant=_refuse_constant)
    except ValueError as exc:  # json.JSONDecodeError is one
        raise ParseError(f"the body is not JSON: {exc}") from None
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
