"""Capturing the log as LOG_FORMAT=json writes it, in tests: every line, formatted when it is logged."""

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager

from creditservice.lib.log_format import JsonFormatter


class JsonLog:
    def __init__(self, stream: io.StringIO):
        self.stream = stream

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def lines(self, logger: str | None = None) -> list[dict]:
        parsed = [json.loads(line) for line in self.text.splitlines()]
        return [line for line in parsed if logger is None or line["logger"] == logger]


@contextmanager
def capture_json_log(level: int = logging.DEBUG) -> Iterator[JsonLog]:
    """Every record that reaches the root logger at `level` or above, as the JSON formatter writes it."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(level)
    try:
        yield JsonLog(stream)
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
