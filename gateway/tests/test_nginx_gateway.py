"""Gateway admission for real: Debian's nginx with the shipped config (deploy/nginx/) in front of a small
upstream, creditservice served by gunicorn on the test database (PostgreSQL, or the SQLite file).

Every call goes client → nginx → auth_request to creditservice → (allowed) the upstream. The upstream
counts what reaches it; the ledger says what was charged.
"""

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests
from django.conf import settings
from django.db import connection

from creditservice.testing.nginx import DEPLOY, free_port, gateway_nginx, render_gateway_conf, wait_until_answering
from quotas.services import budget_set
from wallets.models import Project, Transfer
from wallets.tests.factories import ProjectFactory, scoped_key

from .helpers import metered_route, wallet_of

pytestmark = [pytest.mark.nginx, pytest.mark.django_db(transaction=True)]

class Upstream:
    """The metered API: answers 200 and counts the calls that reach it."""

    def __init__(self):
        self.calls: list[dict] = []
        self.lock = threading.Lock()
        upstream = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                with upstream.lock:
                    upstream.calls.append({"path": self.path, **{k.lower(): v for k, v in self.headers.items()}})
                body = b'{"ok": true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_POST = do_GET

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def count(self) -> int:
        with self.lock:
            return len(self.calls)


def _database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@contextmanager
def _creditservice(tmp: Path) -> Iterator[int]:
    """gunicorn (2 workers × 8 threads) serving the app on the test database."""
    port = free_port()
    log = tmp / "gunicorn.log"
    env = {**os.environ, "DATABASE_URL": _database_url(), "CREDITSERVICE_TESTING": "1",
           "GATEWAY_ROUTE_CACHE_SECONDS": "0", "PROMETHEUS_MULTIPROC_DIR": str(tmp / "metrics")}
    (tmp / "metrics").mkdir(exist_ok=True)
    with open(log, "w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "creditservice.wsgi:application", "-b", f"127.0.0.1:{port}",
             "-w", "2", "--threads", "8", "--worker-class", "gthread", "--timeout", "60"],
            env=env, cwd=settings.BASE_DIR, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_until_answering(port, process, log)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def stack(tmp_path) -> Iterator[dict]:
    upstream = Upstream()
    try:
        with _creditservice(tmp_path) as creditservice_port:
            with gateway_nginx(tmp_path, creditservice_port=creditservice_port, upstream_port=upstream.port) as (port, log):
                yield {"url": f"http://127.0.0.1:{port}", "upstream": upstream, "tmp": tmp_path,
                       "access_log": log, "creditservice_port": creditservice_port}
    finally:
        upstream.server.shutdown()


def _call(url: str, key: str | None, path: str = "/v1/chat", **headers) -> requests.Response:
    if key:
        headers["Authorization"] = f"Bearer {key}"
    return requests.get(url + path, headers=headers, timeout=30)


def _project(slug: str, balance: str) -> tuple[Project, str]:
    project = ProjectFactory(slug=slug, balance=balance)
    return project, scoped_key(project)


def test_the_shipped_config_is_the_template_rendered_with_its_defaults():
    assert (DEPLOY / "creditservice-gateway.conf").read_text() == render_gateway_conf()


def test_through_nginx_calls_are_charged_once_and_refusals_never_reach_the_upstream(stack):
    metered_route("/v1/", price=1_000_000)
    url, upstream = stack["url"], stack["upstream"]
    acme, key = _project("acme", "2")

    # A metered call: charged once, and the upstream learns the project (never the caller's key).
    response = _call(url, key, **{"Idempotency-Key": "call-1"})
    assert response.status_code == 200, response.text
    assert upstream.count() == 1
    seen = upstream.calls[0]
    assert seen["x-credits-project"] == "acme" and seen["x-credits-available"] == "1"
    assert "authorization" not in seen
    # The same Idempotency-Key again (a client's retry): it reaches the upstream, and is not charged again.
    assert _call(url, key, **{"Idempotency-Key": "call-1"}).status_code == 200
    assert wallet_of(acme)[0] == 1_000_000
    assert Transfer.objects.filter(project=acme, kind=Transfer.Kind.USAGE).count() == 1
    # An unmetered path passes without a charge.
    assert _call(url, key, "/health").status_code == 200
    assert _call(url, key).status_code == 200  # the last credit
    reached = upstream.count()

    # No credits left: 402 with the error-shape body, and the upstream never sees it.
    response = _call(url, key)
    assert response.status_code == 402
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == {"error": "insufficient_credits", "detail": "not enough available credits for this call",
                               "available": "0"}

    # A budget at its hard limit.
    capped, capped_key = _project("capped", "10")
    budget_set(project_id=capped.id, hard_limit=1_000_000, soft_limit=None)
    assert _call(url, capped_key).status_code == 200
    response = _call(url, capped_key)
    assert response.status_code == 402 and response.json()["error"] == "budget_exceeded"
    reached += 1

    # A suspended project.
    paused, paused_key = _project("paused", "10")
    Project.objects.filter(id=paused.id).update(status=Project.Status.SUSPENDED)
    response = _call(url, paused_key)
    assert response.status_code == 403 and response.json()["error"] == "project_suspended"

    # An unknown key, and none.
    for unknown in ("cs_not-a-key", None):
        response = _call(url, unknown)
        assert response.status_code == 401 and response.json()["error"] == "unauthenticated"

    assert upstream.count() == reached
    assert wallet_of(acme)[0] == 0 and wallet_of(capped)[0] == 9_000_000 and wallet_of(paused)[0] == 10_000_000


def test_fifty_parallel_calls_against_room_for_twenty_let_exactly_twenty_through(stack):
    metered_route("/v1/", price=1_000_000)
    busy, key = _project("busy", "20")
    with ThreadPoolExecutor(max_workers=50) as pool:
        statuses = list(pool.map(lambda _: _call(stack["url"], key).status_code, range(50)))
    assert sorted(set(statuses)) == [200, 402], statuses
    assert statuses.count(200) == 20
    assert stack["upstream"].count() == 20
    assert Transfer.objects.filter(project=busy, kind=Transfer.Kind.USAGE).count() == 20
    assert wallet_of(busy) == (0, 0)


def test_with_creditservice_down_it_fails_closed_and_the_switch_fails_open_and_marks_the_log(stack):
    metered_route("/v1/", price=1_000_000)
    _, key = _project("acme", "10")
    down = free_port()  # nothing listens there
    upstream = stack["upstream"]
    with gateway_nginx(stack["tmp"], creditservice_port=down, upstream_port=upstream.port) as (port, _):
        response = _call(f"http://127.0.0.1:{port}", key)
        assert response.status_code == 503
        assert response.json()["error"] == "unavailable"
    assert upstream.count() == 0

    with gateway_nginx(stack["tmp"], creditservice_port=down, upstream_port=upstream.port,
                WHEN_UNREACHABLE="@credits_fail_open") as (port, log):
        response = _call(f"http://127.0.0.1:{port}", key, "/v1/chat?n=1")
        assert response.status_code == 200
        assert upstream.count() == 1
        assert upstream.calls[0]["x-credits-admission"] == "fail-open"
        assert "authorization" not in upstream.calls[0]
    lines = log.read_text().splitlines()
    assert any("/v1/chat?n=1" in line and "admission=fail_open" in line for line in lines), lines
