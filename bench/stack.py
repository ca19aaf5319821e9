"""The bench's own PostgreSQL database and the production web server, started and stopped around a run."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

ROOT = Path(__file__).resolve().parent.parent
# Production settings for the server and the seed: DEBUG off and a secret set. The test flag that
# `make bench` inherits from the test environment is dropped: production does not run with it.
SERVER_ENV_DROP = ("CREDITSERVICE_TESTING", "MAKEFLAGS", "MFLAGS", "MAKELEVEL")


def bench_database_url(base_url: str) -> str:
    """The configured DATABASE_URL with its database name suffixed "_bench"; the original is never touched."""
    parts = urlsplit(base_url)
    name = parts.path.lstrip("/") or "creditservice"
    return urlunsplit(parts._replace(path=f"/{name}_bench"))


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


def libpq_url(url: str) -> str:
    """django-environ accepts postgres:// and postgresql://; libpq wants one of them without a driver suffix."""
    parts = urlsplit(url)
    scheme = "postgresql" if parts.scheme.startswith("postgres") else parts.scheme
    return urlunsplit(parts._replace(scheme=scheme))


def _maintenance_url(url: str) -> str:
    return libpq_url(urlunsplit(urlsplit(url)._replace(path="/postgres")))


# DROP DATABASE waits until every backend of the server has absorbed a signal barrier; a session
# of another client stuck in COPY FROM STDIN delays that indefinitely. Give up after this long.
DROP_TIMEOUT = "120s"


def database_recreate(url: str) -> None:
    name = database_name(url)
    with psycopg.connect(_maintenance_url(url), autocommit=True) as conn:
        conn.execute(f"SET statement_timeout = '{DROP_TIMEOUT}'")
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def database_drop(url: str) -> None:
    name = database_name(url)
    with psycopg.connect(_maintenance_url(url), autocommit=True) as conn:
        conn.execute(f"SET statement_timeout = '{DROP_TIMEOUT}'")
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def app_env(database_url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SERVER_ENV_DROP}
    env.update(DATABASE_URL=database_url, DEBUG="0", DJANGO_SETTINGS_MODULE="creditservice.settings")
    env.setdefault("SECRET_KEY", "bench-only-secret-key-not-for-production-use-0123456789")
    env.update(extra)
    return env


def _run(database_url: str, cmd: list[str], timeout: float | None = None, **extra_env: str) -> str:
    """Runs a Django command for the bench database; its output is shown only when it fails."""
    done = subprocess.run(cmd, cwd=ROOT, env=app_env(database_url, **extra_env), capture_output=True,
                          text=True, timeout=timeout)
    if done.returncode:
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-5000:])
        raise RuntimeError(f"{' '.join(cmd[1:])} failed with exit {done.returncode}")
    return done.stdout


def manage(database_url: str, *args: str) -> str:
    return _run(database_url, [sys.executable, "manage.py", *args])


def run_json(database_url: str, module: str, *args: str, timeout: float | None = None, **extra_env: str) -> dict:
    """Run `python -m <module>` with Django's settings for the bench database; its last stdout line is JSON."""
    out = _run(database_url, [sys.executable, "-m", module, *args], timeout, **extra_env)
    return json.loads(out.strip().splitlines()[-1])


def stop_process_group(proc: subprocess.Popen, *, grace: float) -> None:
    """SIGTERM to the process's group (it was started in its own session), SIGKILL after `grace` seconds."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=grace)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=5)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """`make serve` (gunicorn with scripts/gunicorn.conf.py) on a free loopback port, in its own process group."""

    def __init__(self, database_url: str, *, workers: int | None = None) -> None:
        self.port = free_port()
        extra = {"PORT": str(self.port), "HOST": "127.0.0.1"}
        if workers:
            extra["WEB_CONCURRENCY"] = str(workers)
        self.log_path = ROOT / "var" / "bench-server.log"
        self.log_path.parent.mkdir(exist_ok=True)
        self._log = open(self.log_path, "w")  # noqa: SIM115 (kept open for the server's life)
        self.proc = subprocess.Popen(
            ["make", "-s", "--no-print-directory", "serve"], cwd=ROOT, env=app_env(database_url, **extra),
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.url = f"http://127.0.0.1:{self.port}"

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the server exited with {self.proc.returncode}; see {self.log_path}")
            try:
                with urllib.request.urlopen(f"{self.url}/healthz", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.3)
        raise RuntimeError(f"the server did not answer /healthz in {timeout:.0f} s; see {self.log_path}")

    def worker_pids(self) -> list[int]:
        """The gunicorn workers: children of the gunicorn master, itself the child of make."""
        out = subprocess.run(["ps", "-e", "-o", "pid=,ppid=,args="], stdout=subprocess.PIPE, text=True).stdout
        rows = [line.split(None, 2) for line in out.splitlines() if line.strip()]
        children: dict[int, list[tuple[int, str]]] = {}
        for pid, ppid, args in (r if len(r) == 3 else (*r, "") for r in rows):
            children.setdefault(int(ppid), []).append((int(pid), args))
        masters = [pid for pid, args in children.get(self.proc.pid, []) if "gunicorn" in args]
        return [pid for master in masters for pid, _ in children.get(master, [])]

    def stop(self) -> None:
        stop_process_group(self.proc, grace=15)
        self._log.close()


def bench_broker_url() -> str:
    """The bench's own Redis database for Celery (BENCH_BROKER_URL, default: CELERY_BROKER_URL's server, db 13),
    so a bench never takes another run's tasks and a stale task never reaches the bench's worker."""
    explicit = os.environ.get("BENCH_BROKER_URL")
    if explicit:
        return explicit
    base = os.environ.get("CELERY_BROKER_URL") or os.environ.get("REDIS_URL") or "redis://127.0.0.1:6379/0"
    if not base.startswith("redis"):
        raise RuntimeError("the deployed billing run needs Redis: set CELERY_BROKER_URL=redis://… or BENCH_BROKER_URL")
    return urlunsplit(urlsplit(base)._replace(path="/13"))


class CeleryWorker:
    """`celery -A creditservice worker` as deployed (docker-compose's command: prefork, one process per CPU)
    for the bench database, in its own process group; its queue is purged first."""

    def __init__(self, database_url: str) -> None:
        self.env = app_env(database_url, CELERY_BROKER_URL=bench_broker_url())
        self.log_path = ROOT / "var" / "bench-worker.log"
        self.log_path.parent.mkdir(exist_ok=True)
        subprocess.run([sys.executable, "-m", "celery", "-A", "creditservice", "purge", "-f"], cwd=ROOT, env=self.env,
                       capture_output=True, timeout=60)
        self._log = open(self.log_path, "w")  # noqa: SIM115 (kept open for the worker's life)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "creditservice", "worker", "--loglevel=INFO", "--without-gossip",
             "--without-mingle"],
            cwd=ROOT, env=self.env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the Celery worker exited with {self.proc.returncode}; see {self.log_path}")
            if " ready." in self.log_path.read_text(errors="replace"):
                return
            time.sleep(0.3)
        raise RuntimeError(f"the Celery worker was not ready in {timeout:.0f} s; see {self.log_path}")

    def stop(self) -> None:
        stop_process_group(self.proc, grace=30)
        self._log.close()
