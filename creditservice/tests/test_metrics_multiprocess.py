"""Metrics across processes, as deployed: gunicorn with scripts/gunicorn.conf.py and two workers, and a
Celery worker serving its own (METRICS_PORT), on the test database. Whichever process answers the
scrape, the counts are those of every process."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.db import connection
from django.utils import timezone
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from billing.tests.test_faults_worker_killed import Broker, celery_worker
from creditservice.testing.fixtures import ServiceClient
from quotas.models import Reservation
from quotas.tasks import expire_reservations
from quotas.tests.helpers import CHECK, reserve
from wallets.tests.factories import ProjectFactory, platform_key

pytestmark = pytest.mark.django_db(transaction=True)

TOKEN = "scrape-token-for-tests"
ALLOWED = ("creditservice_admission_decisions_total", {"result": "allowed"})
EXPIRED = ("creditservice_reservations_total", {"outcome": "expired"})


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def database_url() -> str:
    """The test database, for the servers this module starts."""
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    return f"postgres://{db['USER']}:{db['PASSWORD'] or ''}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def sample(families, name: str, labels: dict) -> float:
    return next((s.value for family in families for s in family.samples if s.name == name and s.labels == labels), 0.0)


def get(url: str, token: str | None = TOKEN) -> tuple[int, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def scraped(url: str, name: str, labels: dict) -> float:
    status, text = get(url)
    assert status == 200, text[:500]
    return sample(text_string_to_metric_families(text), name, labels)


def wait_until(condition, seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if condition():
                return True
        except OSError:  # not listening yet
            pass
        time.sleep(0.1)
    return False


def test_gunicorn_workers_counts_add_up_in_every_scrape(tmp_path):
    ProjectFactory(slug="acme", balance="100")
    key = platform_key()
    metrics_dir = tmp_path / "metrics"
    metrics_dir.mkdir()
    (metrics_dir / "counter_1.db").write_bytes(b"")  # a previous run's: the master empties the directory
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url(), "CREDITSERVICE_TESTING": "1", "PORT": str(port),
           "HOST": "127.0.0.1", "WEB_CONCURRENCY": "2", "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
           "METRICS_TOKEN": TOKEN, "DJANGO_SETTINGS_MODULE": "creditservice.settings"}
    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "gunicorn"), "creditservice.wsgi:application", "-c",
             "scripts/gunicorn.conf.py"], cwd=django_settings.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        assert wait_until(lambda: server.poll() is None and _answers(f"{base}/healthz")), log_path.read_text()[-3000:]
        assert not (metrics_dir / "counter_1.db").exists()
        body = json.dumps({"project": "acme", "resource_type": "vm", "quantity": "1", "amount": "1"}).encode()

        def check(_) -> int:
            request = urllib.request.Request(f"{base}{CHECK}", data=body, method="POST", headers={
                "Authorization": f"Bearer {key}", "Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status

        sent = 0
        # Concurrent requests reach both sync workers; send more until each has counted some (bounded).
        with ThreadPoolExecutor(max_workers=4) as pool:
            for _ in range(20):
                assert set(pool.map(check, range(20))) == {200}
                sent += 20
                if len(_counts_by_process(metrics_dir)) >= 2:
                    break
        by_process = _counts_by_process(metrics_dir)
        assert len(by_process) == 2, by_process
        assert sum(by_process.values()) == sent
        # Several scrapes, served by either worker: each sees the sum.
        assert {scraped(f"{base}/metrics", *ALLOWED) for _ in range(6)} == {sent}
        assert get(f"{base}/metrics", token=None)[0] == 401
        assert get(f"{base}/metrics", token=key)[0] == 401  # the API key is not the metrics token
    finally:
        _stop(server)


def _answers(url: str) -> bool:
    try:
        return get(url, token=None)[0] == 200
    except OSError:
        return False


def _counts_by_process(metrics_dir: Path) -> dict[str, float]:
    """Allowed admission decisions each process wrote (its own file), where it counted any."""
    counts = {}
    for path in metrics_dir.glob("counter_*.db"):
        value = sample(MultiProcessCollector.merge([str(path)]), *ALLOWED)
        if value:
            counts[path.name] = value
    return counts


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def test_a_celery_worker_serves_the_counts_of_its_pool_processes(tmp_path):
    ProjectFactory(slug="acme", balance="100")
    client = ServiceClient(platform_key())
    ids = [reserve(client, amount="1").json()["id"] for _ in range(3)]
    Reservation.objects.filter(id__in=ids).update(expires_at=timezone.now() - timedelta(minutes=1))
    metrics_dir = tmp_path / "worker-metrics"
    metrics_dir.mkdir()
    broker = Broker(tmp_path)
    broker.wipe()
    port = free_port()
    try:
        with celery_worker(broker, tmp_path / "worker.log", concurrency=2, METRICS_PORT=str(port),
                           METRICS_ADDR="127.0.0.1", METRICS_TOKEN=TOKEN, PROMETHEUS_MULTIPROC_DIR=str(metrics_dir)):
            broker.send(expire_reservations)
            assert wait_until(lambda: not Reservation.objects.filter(id__in=ids, status="pending").exists())
            url = f"http://127.0.0.1:{port}/metrics"
            # Counted in a pool process, served by the worker's main process.
            assert wait_until(lambda: scraped(url, *EXPIRED) == 3), (tmp_path / "worker.log").read_text()[-3000:]
            assert get(url, token=None)[0] == 401
    finally:
        broker.wipe()
