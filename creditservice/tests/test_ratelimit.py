"""The rate limiter's stores: Redis shared by several processes (exactly the limit gets through), and a
Redis that is down or hung lets every request through, counted and logged once. Also the rate format
and a malformed setting at start-up."""

import logging
import multiprocessing
import os
import random
import socket
import threading
import uuid

import pytest
from prometheus_client import REGISTRY

from creditservice.lib import ratelimit
from creditservice.lib.errors import RateLimited
from creditservice.lib.rates import Rate, RateFormatError, effective_rate, parse_rate
from creditservice.testing.fixtures import ServiceClient
from creditservice.tests.test_setup_config_errors import manage, the_one_line
from wallets.auth import api_key_create

REDIS_URL = os.environ.get("TEST_REDIS_URL", "")


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch):
    """Halfway through a minute chosen afresh for each test: all its calls fall in one window, and no
    counter a Redis kept from an earlier run is that window's."""
    now = 1_800_000_000.0 + 60 * random.randrange(10**6) + 30
    monkeypatch.setattr(ratelimit, "clock", lambda: now)


def errors_total() -> float:
    return REGISTRY.get_sample_value("creditservice_rate_limiter_errors_total") or 0.0


@pytest.mark.parametrize(("text", "rate"), [
    ("1200/minute", Rate(1200, 60)), ("5/s", Rate(5, 1)), ("10/sec", Rate(10, 1)), ("7/min", Rate(7, 60)),
    ("100/hour", Rate(100, 3600)), ("3/h", Rate(3, 3600)), (" 2 / Days ", Rate(2, 86400)), ("", None),
])
def test_rates_in_drf_format_are_read(text, rate):
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["lots", "0/minute", "-1/minute", "10/fortnight", "10", "/minute", "1e3/minute"])
def test_a_malformed_rate_is_refused(text):
    with pytest.raises(RateFormatError):
        parse_rate(text)


def test_a_key_of_its_own_wins_over_the_default():
    assert effective_rate(override="", default="10/minute") == Rate(10, 60)
    assert effective_rate(override="5/second", default="10/minute") == Rate(5, 1)
    assert effective_rate(override="Unlimited", default="10/minute") is None
    assert effective_rate(override="", default="") is None


@pytest.mark.parametrize("name", ["API_RATE_LIMIT", "PORTAL_RATE_LIMIT"])
def test_a_malformed_rate_setting_stops_start_up_with_one_line(name):
    line = the_one_line(manage("check", **{name: "100 a minute"}))
    assert f"{name}: '100 a minute' is not a rate" in line and "1200/minute" in line


def test_a_rate_limit_store_that_is_not_redis_stops_start_up_with_one_line():
    line = the_one_line(manage("check", RATE_LIMIT_REDIS_URL="memcached://127.0.0.1:11211"))
    assert "RATE_LIMIT_REDIS_URL must be" in line


def test_threads_of_one_process_share_one_limit_in_memory(settings):
    settings.RATE_LIMIT_REDIS_URL = ""
    start, allowed, lock = threading.Barrier(8), [], threading.Lock()

    def calls() -> None:
        start.wait()
        for _ in range(30):
            try:
                ratelimit.require_within_rate(scope="api_key", ident="threads", rate=Rate(50, 60), what="this API key")
                with lock:
                    allowed.append(1)
            except RateLimited:
                pass

    threads = [threading.Thread(target=calls) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(allowed) == 50


def _hammer(ident: str, tries: int, start, results) -> None:
    """One worker process: `tries` requests of one client against the shared limit."""
    start.wait()
    allowed = 0
    for _ in range(tries):
        try:
            ratelimit.require_within_rate(scope="api_key", ident=ident, rate=Rate(50, 60), what="this API key")
            allowed += 1
        except RateLimited:
            pass
    results.put(allowed)


@pytest.mark.redis
def test_several_worker_processes_share_one_limit_in_redis(settings):
    settings.RATE_LIMIT_REDIS_URL = REDIS_URL
    context = multiprocessing.get_context("fork")
    start, results = context.Barrier(4), context.Queue()
    ident = uuid.uuid4().hex
    workers = [context.Process(target=_hammer, args=(ident, 30, start, results)) for _ in range(4)]
    for worker in workers:
        worker.start()
    allowed = [results.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    # Each process alone stays under the limit (30 of 50): counted apart, all 120 would get through.
    assert sum(allowed) == 50


@pytest.mark.redis
def test_the_api_limit_is_counted_in_redis(settings, project):
    settings.RATE_LIMIT_REDIS_URL = REDIS_URL
    settings.API_RATE_LIMIT = "2/minute"
    client = ServiceClient(api_key_create(name="gateway")[1])
    statuses = [client.get("/api/v1/projects/acme/wallet").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    ratelimit.limiter.reset()  # another process's memory: Redis still has the count
    assert client.get("/api/v1/projects/acme/wallet").status_code == 429


def many_calls_with_the_store(settings, project, caplog, url: str) -> list[int]:
    settings.RATE_LIMIT_REDIS_URL = url
    settings.API_RATE_LIMIT = "1/minute"
    client = ServiceClient(api_key_create(name="gateway")[1])
    with caplog.at_level(logging.WARNING, logger="creditservice.lib.ratelimit"):
        return [client.get("/api/v1/projects/acme/wallet").status_code for _ in range(5)]


def test_with_redis_down_every_call_goes_through_counted_and_logged_once(settings, project, caplog):
    before = errors_total()
    # Port 1 on the loopback refuses at once: no server.
    assert many_calls_with_the_store(settings, project, caplog, "redis://127.0.0.1:1/0") == [200] * 5
    assert errors_total() > before
    warnings = [r for r in caplog.records if r.name == "creditservice.lib.ratelimit"]
    assert len(warnings) == 1 and "let through" in warnings[0].getMessage()


def test_with_redis_hung_every_call_goes_through(settings, project, caplog):
    # A listening socket nobody accepts from: the connection opens, the answer never comes, so only the
    # socket timeout ends the wait.
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)
        before = errors_total()
        url = f"redis://127.0.0.1:{hung.getsockname()[1]}/0"
        assert many_calls_with_the_store(settings, project, caplog, url) == [200] * 5
    assert errors_total() > before
