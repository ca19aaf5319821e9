"""Rates in DRF's format, "<count>/<period>" with the period second, minute, hour or day (or its first
letter, or min/sec): "1200/minute". Parsed once per distinct string (settings are checked at start-up).

No Django or DRF import here: settings.py uses it to refuse a malformed rate before anything starts.
"""

import re
from dataclasses import dataclass
from functools import lru_cache

UNLIMITED = "unlimited"
PERIOD_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_RATE = re.compile(r"^\s*([1-9][0-9]{0,8})\s*/\s*(s|sec|second|m|min|minute|h|hour|d|day)s?\s*$", re.IGNORECASE)
RATE_FORMS = "<count>/<period> with a period of second, minute, hour or day, e.g. 1200/minute"


class RateFormatError(ValueError):
    pass


@dataclass(frozen=True)
class Rate:
    count: int
    period_seconds: int

    @property
    def unit(self) -> str:
        return {1: "second", 60: "minute", 3600: "hour", 86400: "day"}[self.period_seconds]

    def __str__(self) -> str:
        return f"{self.count}/{self.unit}"


@lru_cache(maxsize=1024)
def parse_rate(text: str) -> Rate | None:
    """The rate a setting or an API key names; None for "" (no limit of its own). Cached: the hot path
    looks the same few strings up on every request."""
    if not text.strip():
        return None
    match = _RATE.match(text)
    if match is None:
        raise RateFormatError(f"{text!r} is not a rate: use {RATE_FORMS}")
    return Rate(count=int(match[1]), period_seconds=PERIOD_SECONDS[match[2][0].lower()])


def validate_override(text: str) -> None:
    """An API key's own limit: a rate, "unlimited", or blank (the default applies)."""
    if text.strip().lower() != UNLIMITED:
        parse_rate(text)


def effective_rate(*, override: str, default: str) -> Rate | None:
    """The rate that applies: the key's own, else the default; None means no limit."""
    if override:
        return None if override.strip().lower() == UNLIMITED else parse_rate(override)
    return parse_rate(default)


