"""Paths of the API: what no route can name is refused before a view runs.

A `<str:…>` segment (a checkout session id) or a query parameter reaches a database lookup as it
was sent; PostgreSQL refuses NUL in text, so `/…/checkout-sessions/a%00b` was a 500. And an id too
large for a 64-bit column made SQLite raise OverflowError (a 500) where PostgreSQL found nothing.
"""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from .errors import json_error
from .text import describe, forbidden_character

# Ids are bigint primary keys: the largest a signed 64-bit column holds.
MAX_DATABASE_ID = 2**63 - 1


def database_id(text: str) -> int | None:
    """text as a primary key when it is one (ASCII digits that fit the id column), else None.

    Not str.isdigit(): that also takes "٣" and "²", which int() then reads or refuses (a 500).
    """
    if not (text.isascii() and text.isdigit() and len(text) <= 19):
        return None
    number = int(text)
    return number if 0 < number <= MAX_DATABASE_ID else None


class DatabaseIdConverter:
    """`<db_id:name>`: a positive integer that fits the id column; anything else matches no route (404)."""

    regex = "[0-9]{1,19}"

    def to_python(self, value: str) -> int:
        number = int(value)
        if not 0 < number <= MAX_DATABASE_ID:
            raise ValueError("not an id")  # Django reads ValueError as "this route does not match"
        return number

    def to_url(self, value: int) -> str:
        return str(value)


def register_db_id_converter() -> None:
    """Register `<db_id:…>` once for every URL conf that uses it (wallets, quotas, billing): registering
    a converter's name twice is deprecated in Django."""
    from django.urls import register_converter
    from django.urls.converters import get_converters

    if "db_id" not in get_converters():
        register_converter(DatabaseIdConverter, "db_id")


def path_problem(request: HttpRequest) -> str | None:
    """Why an API request's path or query string cannot name anything, or None."""
    bad = forbidden_character(request.path_info)
    if bad is not None:
        return f"the path must not contain control characters (found {describe(bad)})"
    for name, values in request.GET.lists():
        for text in (name, *values):
            bad = forbidden_character(text)
            if bad is not None:
                return f"query parameter {name!r} must not contain control characters (found {describe(bad)})"
    return None


class ApiPathGuardMiddleware:
    """400 in the error shape for an /api/ path or query string that holds a control character.

    In both middleware lists: settings.MIDDLEWARE and the lean one of service calls (lean_handler.py).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path_info.startswith("/api/"):
            problem = path_problem(request)
            if problem is not None:
                return json_error(400, "validation_error", {"path": [problem]})
        return self.get_response(request)
