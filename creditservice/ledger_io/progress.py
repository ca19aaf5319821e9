"""A one-line row counter on a terminal; nothing when stderr is a file or a pipe (a log stays clean)."""

from collections.abc import Callable
from typing import IO


def terminal_progress(stream: IO[str], verb: str) -> Callable[[int, int], None] | None:
    if not stream.isatty():
        return None

    def report(done: int, total: int) -> None:
        stream.write(f"\r{verb} {done}/{total} rows")
        if done == total:
            stream.write("\n")
        stream.flush()

    return report
