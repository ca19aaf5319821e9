"""Reading many rows of a queryset cheaply."""

from django.db import connection
from django.db.models import QuerySet


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
