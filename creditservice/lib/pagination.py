"""Cursor pagination of the API's lists: newest first by id, bounded pages, strict cursors."""

from typing import Any

from rest_framework.exceptions import NotFound
from rest_framework.pagination import CursorPagination

from .errors import ValidationFailed
from .paths import database_id

DEFAULT_PAGE_SIZE = 50
# The largest page_size a caller may ask for; more is a 400 (the filter serializers check it).
MAX_PAGE_SIZE = 200
# A cursor this API hands out is ~30 characters; anything far longer was not made here.
MAX_CURSOR_LENGTH = 200

_BAD_CURSOR = {"cursor": ["not a cursor this API returned: use the next or previous link of a page"]}


class IdCursorPagination(CursorPagination):
    """Newest first by id. A cursor that this API did not make is a 400, never a 404 or a 500.

    DRF answers an undecodable cursor with 404, and takes the position inside a decodable one as it
    is: "p=abc" or a 30-digit position reached the id filter and failed there (ValueError on any
    backend, OverflowError on SQLite).
    """

    ordering = "-id"
    page_size = DEFAULT_PAGE_SIZE
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE

    def decode_cursor(self, request: Any):
        try:
            cursor = super().decode_cursor(request)
        except NotFound:
            raise ValidationFailed(_BAD_CURSOR) from None
        if cursor is not None and cursor.position is not None and not _is_id(cursor.position):
            raise ValidationFailed(_BAD_CURSOR)
        return cursor


def _is_id(position: str) -> bool:
    return database_id(position) is not None
