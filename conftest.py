"""Suite-wide fixtures. Tests live beside each app (wallets/tests, quotas/tests, billing/tests)."""

import os
import shutil

import pytest

from creditservice.startup import POSTGRESQL_ENGINE

pytest_plugins = ["creditservice.testing.fixtures"]

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# `make test` runs the suite twice: on PostgreSQL, then on SQLite (the embedded default) without the tests
# marked postgres or redis. That second pass says so, and under CI it is then held to SQLite instead.
SQLITE_PASS = os.environ.get("CREDITSERVICE_TEST_SQLITE_PASS", "") == "1"
os.environ.setdefault("CREDITSERVICE_TESTING", "1")


def pytest_configure(config):
    from django.conf import settings

    # Tests never reach a real Stripe or a real metrics store; fixtures point them at local fakes.
    settings.STRIPE_SECRET_KEY = ""
    settings.PROMETHEUS_URL = ""
    settings.CELERY_TASK_ALWAYS_EAGER = True
    # Rate limits count in process memory (reset for each test); the Redis store's tests point at Redis.
    settings.RATE_LIMIT_REDIS_URL = ""
    # A transactional test's flush is DELETE FROM on SQLite, which transfers' append-only trigger refuses.
    from creditservice.testing.flush import let_test_flush_past_transfer_guard

    let_test_flush_past_transfer_guard()


def pytest_sessionstart(session):
    if not CI:
        return
    from django.conf import settings

    problems = []
    engine = settings.DATABASES["default"]["ENGINE"]
    if SQLITE_PASS:
        if engine != "django.db.backends.sqlite3":
            problems.append("CREDITSERVICE_TEST_SQLITE_PASS=1 but the tests are not running on SQLite")
    else:
        if engine != POSTGRESQL_ENGINE:
            problems.append("CI=true but the tests are not running on PostgreSQL")
        if not os.environ.get("TEST_REDIS_URL"):
            problems.append("CI=true but no Redis broker was found for the tests")
    if problems:
        pytest.exit("; ".join(problems), returncode=1)


def pytest_collection_modifyitems(config, items):
    from django.conf import settings

    on_postgres = settings.DATABASES["default"]["ENGINE"] == POSTGRESQL_ENGINE
    skip_pg = pytest.mark.skip(reason="needs PostgreSQL: set DATABASE_URL or start it on 127.0.0.1:5432")
    skip_redis = pytest.mark.skip(reason="needs Redis at 127.0.0.1:6379 (or CELERY_BROKER_URL)")
    # System programs the suite drives for real; `make test` installs them from Debian's packages.
    programs = {"prometheus": ["prometheus", "promtool"], "browser": ["chromium"], "nginx": ["nginx"]}
    # nginx is in /usr/sbin, which a non-root PATH may leave out.
    missing = {marker: [p for p in names if not shutil.which(p) and not shutil.which(p, path="/usr/sbin:/sbin")]
               for marker, names in programs.items()}
    for item in items:
        marker = item.get_closest_marker("django_db")
        if marker is None and {"live_server", "transactional_db"} & set(getattr(item, "fixturenames", ())):
            marker = pytest.mark.django_db(transaction=True).mark
        if marker is not None and marker.kwargs.get("transaction") and "serialized_rollback" not in marker.kwargs:
            # A transactional test ends by flushing every table, which would also wipe the rows that
            # data migrations ship (system accounts, resource types, prices, schedules) for the tests
            # after it; serialized rollback restores them.
            item.add_marker(pytest.mark.django_db(**marker.kwargs, serialized_rollback=True), append=False)
        if "postgres" in item.keywords and not on_postgres:
            if CI and not SQLITE_PASS:
                raise pytest.UsageError("CI=true and a PostgreSQL test cannot run")
            item.add_marker(skip_pg)
        if "redis" in item.keywords and not os.environ.get("TEST_REDIS_URL"):
            item.add_marker(skip_redis)
        for marker, absent in missing.items():
            if marker in item.keywords and absent:
                if CI:
                    raise pytest.UsageError(f"CI=true and {', '.join(absent)} is not installed for {item.nodeid}")
                item.add_marker(pytest.mark.skip(reason=f"needs {', '.join(absent)} (make test installs it)"))


def _open_transactions() -> list[str]:
    """Database aliases with a transaction open in this thread, other than the test's own."""
    from django.db import connections

    return [
        conn.alias for conn in connections.all(initialized_only=True)
        if any(not getattr(block, "_from_testcase", False) for block in conn.atomic_blocks)
    ]


@pytest.fixture(autouse=True)
def _no_network_call_inside_a_transaction(monkeypatch):
    """House rule: no network call inside a database transaction (it would hold row locks, and on SQLite
    the whole database, for as long as the other side takes). Every outbound HTTP call goes through
    requests (Stripe's client, webhooks, the metrics store), so each one made inside a transaction fails
    the test that made it, even where the code under test catches the error."""
    from requests.adapters import HTTPAdapter

    offences: list[str] = []
    send = HTTPAdapter.send

    def guarded_send(self, request, *args, **kwargs):
        if open_in := _open_transactions():
            offences.append(f"{request.method} {request.url} inside a transaction on {', '.join(open_in)}")
            raise AssertionError(offences[-1])
        return send(self, request, *args, **kwargs)

    monkeypatch.setattr(HTTPAdapter, "send", guarded_send)
    yield offences
    assert not offences, f"network calls inside a database transaction: {offences}"


@pytest.fixture(autouse=True)
def _fresh_process_caches():
    """Process caches (system account ids, rate-limit counts) must not leak between tests' databases."""
    from creditservice.lib.ratelimit import limiter
    from wallets import ledger

    ledger._system_ids.clear()
    limiter.reset()
    yield
