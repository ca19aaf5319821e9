"""PostgreSQL array literals, passed as one text parameter to `unnest(%s::type[])`.

The set-based writers of the billing batch send 100,000 values per column; letting the driver dump
each element costs more than the statement they feed, and one literal is parsed by the server in C.
"""

from collections.abc import Sequence


def _quoted(value: object) -> str:
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def _element(value: object, quote: bool) -> str:
    if value is None:
        return "NULL"
    return _quoted(value) if quote else str(value)


def pg_array(values: Sequence, *, quote: bool) -> str:
    """'{…}' for values; quote=True for text-like elements (strings, timestamps, JSON documents).

    A column that holds a few distinct values (a chunk's window, unit, rate or run) renders each once.
    """
    if not values:
        return "{}"
    distinct = set(values)
    if len(distinct) * 4 < len(values):
        rendered = {v: _element(v, quote) for v in distinct}
        return "{" + ",".join([rendered[v] for v in values]) + "}"
    if None in distinct:
        return "{" + ",".join([_element(v, quote) for v in values]) + "}"
    if not quote:
        return "{" + ",".join(map(str, values)) + "}"
    texts = list(map(str, values))
    joined = '","'.join(texts)
    # The separators hold 2 quotes each: any other quote, or a backslash, needs escaping.
    if joined.count('"') != 2 * (len(texts) - 1) or "\\" in joined:
        return "{" + ",".join(map(_quoted, texts)) + "}"
    return '{"' + joined + '"}'
