"""GET /metrics: the metrics of creditservice/lib/metrics.py in Prometheus' text format.

One process (the tests, runserver alone): the process's own registry. Several processes (gunicorn's
workers, a Celery worker's pool, `make run`'s web, worker and beat): prometheus_client's multiprocess
mode, where each process writes its values to files of its own in PROMETHEUS_MULTIPROC_DIR and a
scrape sums them, so the answer is the same whichever worker serves it. prometheus_client picks the
mode when it is first imported, so the entry points set the variable before that
(scripts/gunicorn.conf.py, creditservice/celery_metrics.py, scripts/run_all.sh) and empty the
directory before the processes that write there start (creditservice/lib/metrics_dir.py).

The view is plain Django, not DRF: no API key authentication, no throttle, not in the OpenAPI schema.
"""

import hmac
import json
import logging
import threading
from collections.abc import Iterable, Iterator
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.module_loading import import_string
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess, values
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.metrics_core import Metric

from .errors import json_error

log = logging.getLogger(__name__)

UNAUTHENTICATED_DETAIL = "send Authorization: Bearer <METRICS_TOKEN>"


def multiprocess_mode() -> bool:
    # Ask prometheus_client which storage its values use instead of rereading the environment: the
    # variable may have changed since it chose.
    return values.ValueClass is not values.MutexValue


class _ProcessRegistry:
    """This process's default registry, seen as one collector of a scrape's registry."""

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


class _Isolated:
    """A collector from METRICS_SCRAPE_COLLECTORS whose failure (a database that is down, a typo in the
    setting) costs its own series only: the counters, database_errors among them, are still served."""

    def __init__(self, path: str):
        self.path = path

    def collect(self) -> Iterator[Metric]:
        try:
            metrics = list(import_string(self.path)().collect())
        except Exception:
            log.exception("metrics collector %s failed; its series are left out of this scrape", self.path)
            return
        yield from metrics


def scrape_registry(collectors: Iterable[str] = ()) -> CollectorRegistry:
    """A registry for one scrape: every process's metrics, then each collector class in `collectors`
    (dotted paths), instantiated for this scrape."""
    registry = CollectorRegistry()
    if multiprocess_mode():
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_ProcessRegistry())
    for path in collectors:
        registry.register(_Isolated(path))
    return registry


def scrape_allowed(authorization: str | None) -> bool:
    """No METRICS_TOKEN: anyone may scrape. Otherwise only with `Authorization: Bearer <token>`."""
    token = settings.METRICS_TOKEN
    if not token:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    # compare_digest: the time taken does not tell how much of a guess was right.
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def metrics_view(request: HttpRequest) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        response = json_error(405, "method_not_allowed", f"use GET, not {request.method[:20]}")
        response["Allow"] = "GET, HEAD"
        return response
    if not scrape_allowed(request.headers.get("Authorization")):
        response = json_error(401, "unauthenticated", UNAUTHENTICATED_DETAIL)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    body = generate_latest(scrape_registry(settings.METRICS_SCRAPE_COLLECTORS))
    response = HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
    response["Cache-Control"] = "no-store"
    return response


# --- A Celery worker's own endpoint ------------------------------------------------------------------

class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Scrapes every few seconds are not worth a log line each."""


def _worker_metrics_app(environ: dict, start_response) -> list[bytes]:
    if not scrape_allowed(environ.get("HTTP_AUTHORIZATION")):
        body = json.dumps({"error": "unauthenticated", "detail": UNAUTHENTICATED_DETAIL}).encode()
        start_response("401 Unauthorized", [("Content-Type", "application/json"),
                                            ("WWW-Authenticate", 'Bearer realm="metrics"')])
        return [body]
    # The worker's processes only: the per-scrape collectors (read from the database) are the web's.
    body = generate_latest(scrape_registry())
    start_response("200 OK", [("Content-Type", CONTENT_TYPE_LATEST)])
    return [body]


def serve_worker_metrics(*, addr: str, port: int) -> WSGIServer:
    """Serve this worker's metrics (any path) on addr:port from a daemon thread, for a worker whose
    counters no web process can read (another host or container). Same token as the web's /metrics."""
    server = make_server(addr, port, _worker_metrics_app, ThreadingWSGIServer, handler_class=_QuietHandler)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    log.info("serving metrics on %s:%s", addr, port)
    return server
