"""The probes: GET /healthz (liveness: the process answers, no I/O) and GET /readyz (readiness).

/readyz answers 200 {"status": "ready", "checks": {...}} when the database answers a query, every
migration is applied and the broker (Redis, when CELERY_BROKER_URL names one) answers PING; else 503
{"status": "unavailable", "checks": {...}} naming what failed. No authentication; not in the schema.

Bounded: each check runs in a thread of its own and the answer waits at most CHECK_DEADLINE_SECONDS
for them (a database or broker that accepts and never replies makes that check "timed out", not the
probe hang). A check still stuck from an earlier probe is not started again, so a hung dependency
holds at most one thread per check. Cheap: once every migration was found applied that is
remembered (the migration graph is not loaded again for each probe).
"""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import redis
from django.conf import settings
from django.db import connection, connections
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpRequest, JsonResponse
from django.views.decorators.http import require_safe
from kombu import Connection

CHECK_DEADLINE_SECONDS = 2.0
# The database's own bound on the check's query (PostgreSQL), inside the deadline.
STATEMENT_TIMEOUT_MS = 1500
FAILURE_TEXT_MAX_LENGTH = 200


@require_safe
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness only: answers without touching the database."""
    return JsonResponse({"status": "ok"})


@require_safe
def readyz(request: HttpRequest) -> JsonResponse:
    results = run_checks(CHECK_DEADLINE_SECONDS)
    ready = all(result.ok for result in results.values())
    body = {"status": "ready" if ready else "unavailable", "checks": {name: r.text for name, r in results.items()}}
    return JsonResponse(body, status=200 if ready else 503)


@dataclass(frozen=True)
class Result:
    ok: bool
    text: str


OK = Result(True, "ok")
NOT_CHECKED = Result(False, "not checked")


# --- The checks -----------------------------------------------------------------------------------
_all_migrations_applied = False


def database_results() -> dict[str, Result]:
    try:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                # This thread's own connection, closed when the check ends: the setting dies with it.
                cursor.execute(f"SET statement_timeout = {STATEMENT_TIMEOUT_MS}")
            cursor.execute("SELECT 1")
    except Exception as exc:  # any driver's error: refused, authentication, timeout
        return {"database": failure("unavailable", exc), "migrations": NOT_CHECKED}
    return {"database": OK, "migrations": migrations_result()}


def migrations_result() -> Result:
    global _all_migrations_applied
    if _all_migrations_applied:
        return OK
    executor = MigrationExecutor(connection)
    unapplied = len(executor.migration_plan(executor.loader.graph.leaf_nodes()))
    if unapplied:
        return Result(False, f"{unapplied} unapplied")
    _all_migrations_applied = True
    return OK


def forget_migrations_applied() -> None:
    """Check the migrations again at the next probe (tests; a deploy restarts the process anyway)."""
    global _all_migrations_applied
    _all_migrations_applied = False


def broker_results() -> dict[str, Result]:
    url = settings.CELERY_BROKER_URL
    if url.startswith("filesystem://"):
        return {"broker": Result(True, "skipped (filesystem broker)")}
    timeout = settings.BROKER_TIMEOUT_SECONDS  # the bound every publish has (settings, "Celery")
    try:
        if url.startswith(("redis://", "rediss://", "unix://")):
            client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
            try:
                client.ping()
            finally:
                client.close()
        else:
            with Connection(url, connect_timeout=timeout, transport_options=settings.CELERY_BROKER_TRANSPORT_OPTIONS) as conn:
                conn.ensure_connection(max_retries=0)
    except Exception as exc:  # any transport's error
        return {"broker": failure("unreachable", exc)}
    return {"broker": OK}


def failure(what: str, exc: Exception) -> Result:
    return Result(False, without_secrets(f"{what}: {type(exc).__name__}: {exc}")[:FAILURE_TEXT_MAX_LENGTH])


def without_secrets(text: str) -> str:
    """text without the database password or the broker URL's (a driver may quote what it was given)."""
    secrets = [settings.DATABASES["default"].get("PASSWORD") or "", urlsplit(settings.CELERY_BROKER_URL).password or ""]
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


# --- Running them within the deadline -------------------------------------------------------------
@dataclass
class Check:
    names: tuple[str, ...]  # the results it gives (all "timed out" when it does not finish)
    run: Callable[[], dict[str, Result]]
    # Held while a run is in progress: a check stuck in an earlier probe is not started twice.
    running: threading.Lock = field(default_factory=threading.Lock)


CHECKS = (Check(("database", "migrations"), database_results), Check(("broker",), broker_results))


@dataclass
class Run:
    check: Check
    done: threading.Event = field(default_factory=threading.Event)
    results: dict[str, Result] = field(default_factory=dict)


def run_checks(deadline_seconds: float) -> dict[str, Result]:
    runs = [start(check) for check in CHECKS]
    # One deadline for all: the checks run at the same time.
    end = time.monotonic() + deadline_seconds
    results: dict[str, Result] = {}
    for check, run in zip(CHECKS, runs, strict=True):
        if run is not None and run.done.wait(max(0.0, end - time.monotonic())):
            results.update(run.results)
        else:
            text = "timed out" if run is not None else "timed out (an earlier check has not finished)"
            results.update({name: Result(False, text) for name in check.names})
    return results


def start(check: Check) -> Run | None:
    if not check.running.acquire(blocking=False):
        return None
    run = Run(check)

    def target() -> None:
        try:
            run.results.update(check.run())
        except Exception as exc:  # a check's own bug must not make the probe a 500
            run.results.update({name: failure("failed", exc) for name in check.names})
        finally:
            connections.close_all()  # this thread's connections only
            check.running.release()
            run.done.set()

    threading.Thread(target=target, name=f"readyz-{check.names[0]}", daemon=True).start()
    return run
