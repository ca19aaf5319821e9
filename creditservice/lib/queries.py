"""Raw SQL beside the ORM: datetimes as parameters, and reading many rows of a queryset cheaply."""

from datetime import datetime

from django.db import connection
from django.db.models import QuerySet


def db_datetime(value: datetime):
    """A datetime as a raw-SQL parameter, in the form the ORM stores and compares it.

    SQLite keeps datetimes as text; the ORM writes them as naive UTC "YYYY-MM-DD HH:MM:SS.ffffff" and
    compares text against text. A datetime passed to raw SQL as it is would be written with its "+00:00"
    offset (and without ".000000" on a whole second), which never equals and sorts apart from the ORM's
    text, so every raw write or comparison of a datetime goes through here.
    PostgreSQL gets the datetime itself.
    """
    return connection.ops.adapt_datetimefield_value(value)


def fetch_rows(queryset: QuerySet) -> list[tuple]:
    """The rows of a values_list() queryset, as tuples.

    On PostgreSQL they come straight from the driver: Django's iterator fetches 100 rows at a time and
    passes each through its converters, which for 100,000 rows costs more than the query. The columns
    read this way (integers, decimals, timestamps) need no converter there.
    """
    if connection.vendor != "postgresql":
        return [row if isinstance(row, tuple) else (row,) for row in queryset]
    sql, params = queryset.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.cursor.execute(sql, params)
        return cursor.cursor.fetchall()
