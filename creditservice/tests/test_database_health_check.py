"""A persistent PostgreSQL connection is checked at the start of each request without a round trip
(creditservice/lib/postgresql_backend): a healthy one is used as it is, one the server closed is
replaced before the request's first statement, so a database restart costs no request an error."""

import time

import pytest
from django.db import connection, connections
from django.db.backends.postgresql import base as django_postgresql

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def second_connection():
    """A connection of its own (the test's is inside the test's transaction), health checked like a web worker's."""
    other = connections.create_connection("default")
    other.ensure_connection()
    other.health_check_enabled = True
    yield other
    other.close()


def _new_request(conn) -> None:
    conn.health_check_done = False  # what Django does when a request starts


def test_a_healthy_connection_is_used_without_asking_the_server(second_connection, monkeypatch):
    asked = []
    monkeypatch.setattr(django_postgresql.DatabaseWrapper, "is_usable", lambda self: asked.append(1) or True)
    kept = second_connection.connection
    _new_request(second_connection)
    with second_connection.cursor() as cursor:
        cursor.execute("SELECT 41 + 1")
        assert cursor.fetchone() == (42,)
    assert second_connection.connection is kept and asked == []


def test_a_connection_the_server_closed_is_replaced_before_the_first_statement(second_connection):
    with second_connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    deadline = time.monotonic() + 30  # the server's goodbye reaches the socket a moment later
    while second_connection.is_usable() and time.monotonic() < deadline:
        time.sleep(0.01)
    _new_request(second_connection)
    with second_connection.cursor() as cursor:  # no error: a new connection
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != pid
