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


def unnest_select(columns: Sequence[tuple[str, Sequence]]) -> tuple[str, list]:
    """`SELECT <one expression per column> FROM unnest(…)` and its parameters, for rows given column by
    column as (PostgreSQL type, values). A column whose values are all equal (a chunk's window, run,
    unit, rate…) travels once, as a scalar: the server parses one value instead of 100,000; so does a
    column given as a single value, which stands for every row. jsonb columns travel as text and are cast."""
    count = len(columns[0][1])
    expressions, scalars, arrays, unnested = [], [], [], []
    for i, (pg_type, values) in enumerate(columns):
        wire = "text" if pg_type == "jsonb" else pg_type
        distinct = set(values)
        if len(distinct) == 1:
            scalars.append(next(iter(distinct)))
            expressions.append(f"%s::{wire}" + ("::jsonb" if pg_type == "jsonb" else ""))
            continue
        arrays.append(pg_array(values, quote=wire in ("text", "timestamptz")))
        unnested.append((f"c{i}", f"%s::{wire}[]"))
        expressions.append(f"c{i}::jsonb" if pg_type == "jsonb" else f"c{i}")
    if unnested:
        source = (f"unnest({', '.join(param for _, param in unnested)}) "
                  f"AS t({', '.join(name for name, _ in unnested)})")
    else:
        source, arrays = "generate_series(1, %s)", [count]
    return f"SELECT {', '.join(expressions)} FROM {source}", [*scalars, *arrays]
