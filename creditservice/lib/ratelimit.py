"""Request rate limits: a fixed window counted in Redis (shared by every worker) or in process memory.

Rates come from creditservice/lib/rates.py. Each (scope, id) gets `count` requests per window; the
window is aligned to the clock (a minute starts at :00), so a burst of up to twice the count can
straddle a boundary: the price of one counter per window and one round trip per request. Workers
name the window from their own clock, so their clocks must agree (NTP) to share a window exactly.

The limiter is best effort and fails open: when Redis does not answer the request goes through, the
failure is counted (RATE_LIMITER_ERRORS) and logged at most once a minute, and Redis is not asked
again for STORE_RETRY_SECONDS, so an unreachable store costs one timeout, not one per request.
"""

import logging
import math
import threading
import time
from dataclasses import dataclass

from creditservice.lib.errors import RateLimited
from creditservice.lib.metrics import RATE_LIMITED, RATE_LIMITER_ERRORS
from creditservice.lib.rates import Rate

log = logging.getLogger(__name__)

# Bounds: the memory store forgets everything past this many counters (a new window starts them
# again); after a store failure, Redis is left alone this long; a failure is logged this often at most.
MEMORY_MAX_COUNTERS = 100_000
STORE_RETRY_SECONDS = 1.0
WARNING_INTERVAL_SECONDS = 60.0

# Seconds since the epoch; tests replace it to stay inside one window.
clock = time.time


@dataclass(frozen=True)
class Window:
    index: int
    seconds_left: int


def current_window(rate: Rate) -> Window:
    now = clock()
    index = int(now // rate.period_seconds)
    return Window(index=index, seconds_left=max(1, math.ceil((index + 1) * rate.period_seconds - now)))


class MemoryStore:
    """Counters of this process only (the embedded default: one process, no Redis)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, tuple[int, int]] = {}

    def count(self, key: str, window: Window) -> int:
        with self._lock:
            index, hits = self._counters.get(key, (window.index, 0))
            hits = hits + 1 if index == window.index else 1
            if len(self._counters) >= MEMORY_MAX_COUNTERS and key not in self._counters:
                self._counters.clear()
            self._counters[key] = (window.index, hits)
            return hits

    def clear(self) -> None:
        with self._lock:
            self._counters.clear()


# INCR and set the expiry on the window's first hit, atomically and in one round trip (EVALSHA).
_COUNT_SCRIPT = """
local hits = redis.call('INCR', KEYS[1])
if hits == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return hits
"""


class RedisStore:
    """Counters in Redis, shared by every web worker; each window's key expires with the window."""

    def __init__(self, url: str, *, timeout_seconds: float) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        # One attempt, bounded: a request never waits on the limiter longer than the timeout (twice at worst:
        # a slow connect, then no reply), and a failure lets it through.
        self._client = redis.Redis.from_url(url, socket_timeout=timeout_seconds, socket_connect_timeout=timeout_seconds,
                                            retry=Retry(NoBackoff(), 0), retry_on_timeout=False)
        self._script = self._client.register_script(_COUNT_SCRIPT)

    def count(self, key: str, window: Window) -> int:
        # The key expires a second after its window ends: a late hit of the window never revives it.
        return int(self._script(keys=[f"ratelimit:{key}:{window.index}"], args=[window.seconds_left + 1]))


class Limiter:
    def __init__(self) -> None:
        self._memory = MemoryStore()
        self._redis: dict[str, RedisStore] = {}
        self._lock = threading.Lock()
        self._skip_redis_until = 0.0
        self._last_warning = -math.inf

    def _store(self) -> MemoryStore | RedisStore:
        from django.conf import settings

        url = settings.RATE_LIMIT_REDIS_URL
        if not url:
            return self._memory
        store = self._redis.get(url)
        if store is None:
            with self._lock:
                store = self._redis.setdefault(url, RedisStore(url, timeout_seconds=settings.RATE_LIMIT_TIMEOUT_SECONDS))
        return store

    def hits(self, key: str, window: Window) -> int | None:
        """This request's number in its window, or None when the store failed (let it through)."""
        store = self._store()
        if isinstance(store, RedisStore):
            if time.monotonic() < self._skip_redis_until:
                return None
            try:
                return store.count(key, window)
            except Exception as exc:  # any failure of the store lets the request through (fail open)
                self._store_failed(exc)
                return None
        return store.count(key, window)

    def _store_failed(self, exc: Exception) -> None:
        RATE_LIMITER_ERRORS.inc()
        now = time.monotonic()
        self._skip_redis_until = now + STORE_RETRY_SECONDS
        if now - self._last_warning >= WARNING_INTERVAL_SECONDS:
            self._last_warning = now
            log.warning("rate limiter store failed (%s: %s); requests are let through unlimited until it answers",
                        type(exc).__name__, str(exc)[:200])

    def reset(self) -> None:
        """Forget this process's counters and its Redis failure (tests)."""
        self._memory.clear()
        self._skip_redis_until = 0.0
        self._last_warning = -math.inf


limiter = Limiter()


def require_within_rate(*, scope: str, ident: int | str, rate: Rate | None, what: str) -> None:
    """Count one request of `ident` under `scope`; RateLimited (429 with Retry-After) past the rate.

    `what` names the caller in the answer ("this API key"). `scope` must be one of RATE_LIMITED's
    label values (api_key, portal_user).
    """
    if rate is None:
        return
    window = current_window(rate)
    hits = limiter.hits(f"{scope}:{ident}:{rate.period_seconds}", window)
    if hits is None or hits <= rate.count:
        return
    RATE_LIMITED.labels(scope=scope).inc()
    raise RateLimited(f"{what} may make {rate.count} requests a {rate.unit}; retry in {window.seconds_left} seconds",
                      retry_after=window.seconds_left)
