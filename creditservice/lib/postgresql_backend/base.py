"""Django's PostgreSQL backend, with a health check of a persistent connection that costs no round trip.

With CONN_HEALTH_CHECKS, Django checks a reused connection at the start of every request. Its check is
a `SELECT 1`: one round trip per request, a fifth of a reserve's statements once the reserve itself is
one call (quotas/services/functions.py). A connection that the server closed (a restart, an idle
timeout, pg_terminate_backend) has something to read: the server's error message and then the end of
the stream. So the socket is polled first, without waiting: nothing to read means the connection is as
the last request left it and is used; anything to read, or a connection psycopg knows is broken, gets
Django's own check, which then closes it and the request opens a new one. A connection that dies
silently (no packet arrives) is found by neither check before its first statement fails, as before.
"""

import select

from django.db.backends.postgresql import base


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self) -> bool:
        connection = self.connection
        if connection is None or connection.closed or connection.broken:
            return False
        try:
            readable, _, _ = select.select([connection.fileno()], [], [], 0)
        except (OSError, ValueError):
            return False
        return super().is_usable() if readable else True
