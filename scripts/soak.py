"""Soak the embedded default: concurrent clients doing credits, debits, reservations, commits and releases.

    .venv/bin/python scripts/soak.py                  # fresh SQLite server on a free port, 8 clients, 60 s
    .venv/bin/python scripts/soak.py --url http://127.0.0.1:8000   # against a running `make run`

Without --url it migrates a fresh SQLite file under var/soak/, serves it with `manage.py runserver` (what
`make run` serves) on a free port, and, as the worker and beat of `make run` would, expires overdue
holds and sweeps lifecycles in the background while the clients run. With --url the server is yours:
the script sets up its projects and key in the database DATABASE_URL names (the embedded default
var/db.sqlite3 when unset), which must be the one that server uses.

At the end it reports the answers by status, the 5xx count and check_ledger's verdict. It exits 1 on
any 5xx or other unexpected answer, or a ledger drift.
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE_DIR))

from creditservice.testing.workload import MixedClient, Tally  # noqa: E402

SLUGS = ["soak-0", "soak-1", "soak-2"]
# Seconds between the background sweeps (beat runs them every minute; more often finds more races).
SWEEP_SECONDS = 5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_call(base_url: str, raw_key: str, timeout: float = 60):
    # Loopback only: never through a proxy from the environment.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def call(method: str, path: str, body: dict | None, key: str | None):
        headers = {"Authorization": f"Bearer {raw_key}", "Content-Type": "application/json"}
        if key:
            headers["Idempotency-Key"] = key
        data = json.dumps(body or {}).encode()
        request = urllib.request.Request(base_url + path, data=data, method=method, headers=headers)
        try:
            with opener.open(request, timeout=timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        except OSError as error:  # no answer at all counts as a server failure
            return 599, {"error": type(error).__name__, "detail": str(error)}
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, {"raw": raw[:300].decode(errors="replace")}

    return call


def django_setup(database_url: str | None) -> None:
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "creditservice.settings")
    os.environ.setdefault("DEBUG", "1")
    import django

    django.setup()


def prepare_projects(balance_credits: str) -> str:
    """The soak's projects, funded, and a platform key for the clients (made afresh each run)."""
    from creditservice.lib.money import credits_to_micros
    from wallets import services
    from wallets.auth import api_key_create
    from wallets.models import Project

    for slug in SLUGS:
        project = Project.objects.filter(slug=slug).first() or services.project_create(slug=slug, name=slug)
        services.wallet_credit(project=project, amount=credits_to_micros(balance_credits), reason="soak funding",
                               idempotency_key=f"v1:soak:{slug}:{time.time_ns()}", actor="system")
    return api_key_create(name=f"soak {time.strftime('%Y-%m-%d %H:%M:%S')}")[1]


def start_server(database_url: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "DATABASE_URL": database_url, "DEBUG": "1", "PORT": str(port)}
    env.pop("CREDITSERVICE_TESTING", None)
    python = sys.executable
    subprocess.run([python, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=BASE_DIR, env=env, check=True)
    log = open(BASE_DIR / "var" / "soak" / "server.log", "w")
    return subprocess.Popen([python, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
                            cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def wait_until_up(base_url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    call = http_call(base_url, "none", timeout=2)
    while time.monotonic() < deadline:
        if call("GET", "/api/v1/projects/", None, None)[0] < 500:
            return
        time.sleep(0.2)
    raise SystemExit(f"the server at {base_url} did not answer within {seconds:.0f} s")


def background_sweeps(stop: threading.Event, errors: list[str]) -> None:
    """What `make run`'s beat does every minute, more often, in this process against the same file."""
    from django.db import connection

    from billing.tasks import lifecycle_sweep
    from quotas.tasks import expire_reservations

    try:
        while not stop.wait(SWEEP_SECONDS):
            for task in (expire_reservations, lifecycle_sweep):
                try:
                    task()
                except Exception as exc:  # reported, and the soak goes on
                    errors.append(f"{task.__name__}: {type(exc).__name__}: {exc}")
    finally:
        connection.close()


def soak(call, *, clients: int, seconds: float) -> tuple[Tally, float]:
    deadline = time.monotonic() + seconds

    def walk(i: int) -> Tally:
        walker = MixedClient(call, slugs=SLUGS, name=f"soak-{os.getpid()}-{time.time_ns()}-{i}", seed=i)
        while time.monotonic() < deadline:
            walker.step()
        walker.finish()
        return walker.tally

    started = time.monotonic()
    total = Tally()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        for tally in pool.map(walk, range(clients)):
            total.merge(tally)
    return total, time.monotonic() - started


def ledger_verdict() -> tuple[bool, str]:
    from io import StringIO

    from django.core.management import call_command
    from django.core.management.base import CommandError

    out, err = StringIO(), StringIO()
    try:
        call_command("check_ledger", stdout=out, stderr=err)
        return True, out.getvalue().strip()
    except CommandError as exc:
        return False, f"{err.getvalue().strip()}\n{exc}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--url", help="a running server (make run); default: start one on a fresh SQLite file")
    parser.add_argument("--database-url", help="the server to start serves this database (default: a fresh SQLite "
                        "file var/soak/soak.sqlite3)")
    parser.add_argument("--balance", default="10", help="credits each soak project starts with")
    args = parser.parse_args()

    server = None
    if args.url:
        base_url = args.url.rstrip("/")
        django_setup(None)
    else:
        soak_dir = BASE_DIR / "var" / "soak"
        soak_dir.mkdir(parents=True, exist_ok=True)
        for old in soak_dir.glob("soak.sqlite3*"):
            old.unlink()
        database_url = args.database_url or f"sqlite:///{soak_dir / 'soak.sqlite3'}"
        port = free_port()
        base_url = f"http://127.0.0.1:{port}"
        server = start_server(database_url, port)
        django_setup(database_url)
    stop, sweep_errors = threading.Event(), []
    try:
        wait_until_up(base_url)
        raw_key = prepare_projects(args.balance)
        sweeper = None
        if server is not None:
            sweeper = threading.Thread(target=background_sweeps, args=(stop, sweep_errors), daemon=True)
            sweeper.start()
        print(f"soak: {args.clients} clients for {args.seconds:.0f} s against {base_url}", flush=True)
        tally, elapsed = soak(http_call(base_url, raw_key), clients=args.clients, seconds=args.seconds)
        stop.set()
        if sweeper is not None:
            sweeper.join(timeout=60)
        ok, verdict = ledger_verdict()
    finally:
        stop.set()
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()

    by_status = ", ".join(f"{status}: {count}" for status, count in sorted(tally.statuses.items()))
    print(f"calls: {tally.calls} in {elapsed:.1f} s ({tally.calls / elapsed:.0f}/s); by status: {by_status}")
    print(f"5xx: {tally.server_errors}; other unexpected answers: {len(tally.unexpected) - tally.server_errors}")
    for operation, status, body in tally.unexpected[:10]:
        print(f"  {operation} -> {status} {json.dumps(body)[:300]}")
    if sweep_errors:
        print(f"background sweeps failed {len(sweep_errors)} times, first: {sweep_errors[0]}")
    print(f"check_ledger: {verdict}")
    return 0 if ok and not tally.unexpected and not sweep_errors else 1


if __name__ == "__main__":
    sys.exit(main())
