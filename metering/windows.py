"""Billing windows: settings.BILLING_WINDOW_MINUTES long, aligned to the UTC epoch (so 60-minute
windows start on the hour). Every part of metering and billing cuts time with these functions."""

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.utils import timezone

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def window_length() -> timedelta:
    return timedelta(minutes=settings.BILLING_WINDOW_MINUTES)


def window_start_of(moment: datetime) -> datetime:
    """The start of the window that contains `moment` (a window is [start, start + length))."""
    if timezone.is_naive(moment):
        raise ValueError("window_start_of needs an aware datetime")
    length = int(window_length().total_seconds())
    seconds = int((moment - EPOCH).total_seconds() // length) * length
    return EPOCH + timedelta(seconds=seconds)


def window_bounds(moment: datetime) -> tuple[datetime, datetime]:
    start = window_start_of(moment)
    return start, start + window_length()


def is_window_start(moment: datetime) -> bool:
    return window_start_of(moment) == moment


def last_closed_window(now: datetime | None = None) -> tuple[datetime, datetime]:
    """The most recent window that has ended by `now`."""
    start = window_start_of(now or timezone.now()) - window_length()
    return start, start + window_length()


def windows_between(first_start: datetime, last_start: datetime) -> Iterator[tuple[datetime, datetime]]:
    """Every window from the one containing first_start to the one containing last_start, oldest first."""
    start, stop, length = window_start_of(first_start), window_start_of(last_start), window_length()
    while start <= stop:
        yield start, start + length
        start += length
