"""Start-up checks: a configuration mistake is one line that says what to set, not a traceback.

manage.py, gunicorn (scripts/gunicorn.conf.py) and the Celery worker and beat (creditservice/celery.py)
run through `exit_on_config_error`, which prints `creditservice: <what to set>` on stderr and exits 2
for an ImproperlyConfigured from settings and for a database that cannot be opened at all. An error
from a database that did open (a lock, a constraint) is a real failure and keeps its traceback.
"""

import os
import sys
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

EXIT_CONFIG_ERROR = 2
SUPPORTED_ENGINES = ("django.db.backends.postgresql", "django.db.backends.sqlite3")
# What a PostgreSQL URL runs on: Django's backend with a health check that costs no round trip.
POSTGRESQL_ENGINE = "creditservice.lib.postgresql_backend"
DATABASE_URL_FORMS = "postgres://USER:PASSWORD@HOST:5432/NAME or sqlite:///path/to/file.sqlite3"
SECRET_KEY_MISSING = (
    "SECRET_KEY is not set: set SECRET_KEY to a long random string "
    "(python3 -c 'import secrets; print(secrets.token_urlsafe(50))'), or DEBUG=1 for development "
    "(make run writes both to .env when there is none)"
)


def masked_url(url: str) -> str:
    """The URL with its password replaced, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()


def database_config(url: str) -> dict[str, Any]:
    """Django's DATABASES entry for DATABASE_URL; a URL it cannot use is an ImproperlyConfigured."""
    import environ

    problem = f"DATABASE_URL={masked_url(url)!r} is not a database URL creditservice can use"
    try:
        with warnings.catch_warnings():
            # environ warns about an unknown scheme; the error below says it in one line instead.
            warnings.simplefilter("ignore")
            config = environ.Env.db_url_config(url)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{problem} ({exc}): set it to {DATABASE_URL_FORMS}")
    if config.get("ENGINE") not in SUPPORTED_ENGINES:
        raise ImproperlyConfigured(f"{problem}: set it to {DATABASE_URL_FORMS}")
    if config["ENGINE"] == SUPPORTED_ENGINES[0]:
        if not config.get("NAME"):
            raise ImproperlyConfigured(f"{problem} (no database name): set it to {DATABASE_URL_FORMS}")
        config["ENGINE"] = POSTGRESQL_ENGINE
    return config


def database_problem(exc: Exception) -> str:
    """One line for a database that could not be opened: which one, why, and what to do."""
    from django.conf import settings

    config = settings.DATABASES["default"]
    url = masked_url(os.environ.get("DATABASE_URL") or f"sqlite:///{config['NAME']}")
    reason = " ".join(str(exc).splitlines()[0].split()).removeprefix("connection failed: ")
    if config["ENGINE"] == "django.db.backends.sqlite3":
        advice = "its directory must exist and be writable, or set DATABASE_URL to another file"
    elif "does not exist" in reason and f'"{config["NAME"]}"' in reason:
        command = " ".join(
            part for part in (
                "createdb",
                f"-h {config['HOST']}" if config.get("HOST") else "",
                f"-p {config['PORT']}" if config.get("PORT") else "",
                f"-U {config['USER']}" if config.get("USER") else "",
                config["NAME"],
            ) if part
        )
        advice = f"create it ({command}) or set DATABASE_URL to one that exists"
    elif "authentication failed" in reason or "password" in reason:
        advice = "check the user and password in DATABASE_URL"
    else:
        advice = "start the server, or set DATABASE_URL to one that answers"
    return f"cannot open the database at DATABASE_URL={url}: {reason}; {advice}"


class _ConnectionWatch:
    """Remembers whether a database connection ever opened in this process."""

    opened = False

    @classmethod
    def mark(cls, **kwargs: Any) -> None:
        cls.opened = True


def config_error_message(exc: BaseException) -> str | None:
    """The one line for a configuration mistake, or None when `exc` is not one."""
    from django.db.utils import OperationalError

    if isinstance(exc, ImproperlyConfigured):
        return " ".join(str(exc).split())
    # Django closes connections when a command ends, so "was it ever open" is what tells a server
    # that cannot be reached from a query that failed on an open connection.
    if isinstance(exc, OperationalError) and not _ConnectionWatch.opened:
        return database_problem(exc)
    return None


@contextmanager
def exit_on_config_error() -> Iterator[None]:
    """Turn a configuration mistake raised inside into `creditservice: <message>` and exit 2."""
    from django.db.backends.signals import connection_created
    from django.db.utils import OperationalError

    connection_created.connect(_ConnectionWatch.mark, dispatch_uid="creditservice.startup")
    try:
        yield
    except (ImproperlyConfigured, OperationalError) as exc:
        message = config_error_message(exc)
        if message is None:
            raise
        print(f"creditservice: {message}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG_ERROR)


def check_database() -> None:
    """Open the default database once and close it: raises OperationalError if it cannot.

    Closed again so that a process that forks next (gunicorn's master, Celery's prefork pool) never
    hands one connection to several children.
    """
    from django.db import connection

    connection.ensure_connection()
    connection.close()


def run_checked(main: Callable[[], Any], *, database: bool = False) -> Any:
    """Load the settings (and open the database when asked) before `main`, all under the guard."""
    with exit_on_config_error():
        from django.conf import settings

        settings.INSTALLED_APPS  # noqa: B018  (loads the settings: an ImproperlyConfigured is raised here)
        if database:
            check_database()
        return main()
