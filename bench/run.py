"""`python -m bench`: set up the bench database and server, run each section, print, clean up."""

import argparse
import os
import signal
import sys
import time
import uuid
from datetime import UTC, datetime

import psycopg

from . import admission, billing, floor, gateway, grpc_admission, profile, stack
from .proc_cpu import CpuMeter
from .report import Report

SECTIONS = ("admission", "billing", "ingest", "gateway", "grpc")
AMOUNT_MICROS = 10_000  # 0.01 credits per reservation, as the HTTP clients send


def _terminate(signum, frame):  # SIGTERM/SIGHUP → the same clean-up as Ctrl-C
    raise KeyboardInterrupt


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--seconds", type=float, default=float(os.environ.get("BENCH_SECONDS", 20)),
                        help="length of each timed run (default 20, or BENCH_SECONDS)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--only", choices=SECTIONS, action="append", help="run only this section (repeatable)")
    parser.add_argument("--workers", type=int, default=None, help="WEB_CONCURRENCY for the server (default: the config's)")
    parser.add_argument("--profile", action="store_true",
                        help="sample the web workers with py-spy during the 100-wallet run and print the top frames")
    parser.add_argument("--queries", action="store_true",
                        help="print the SQL statements one reserve and one commit run (Django test client)")
    parser.add_argument("--billing-projects", type=int, default=int(os.environ.get("BENCH_BILLING_PROJECTS", 100_000)))
    parser.add_argument("--keep-db", action="store_true", help="leave the bench database in place (debugging)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    base_url = os.environ.get("DATABASE_URL", "")
    if not base_url.startswith("postgres"):
        print("make bench needs PostgreSQL: set DATABASE_URL=postgres://…", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _terminate)
    signal.signal(signal.SIGHUP, _terminate)
    sections = args.only or list(SECTIONS)
    url = stack.bench_database_url(base_url)
    pg_url = stack.libpq_url(url)
    report = Report(seconds=args.seconds, clients=args.clients)
    server = None
    started = time.monotonic()
    try:
        step(f"database {stack.database_name(url)}: create, migrate, seed")
        stack.database_recreate(url)
        stack.manage(url, "migrate", "--noinput")
        seed = stack.run_json(url, "bench.seed")
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("ANALYZE")
            report.postgres = conn.execute("SHOW server_version").fetchone()[0]
        if args.queries:
            report.queries = stack.run_json(url, "bench.queries", "--key", seed["key"], "--project", seed["slugs"][0])
        step("server: make serve")
        server = stack.Server(url, workers=args.workers)
        server.wait_ready()
        report.workers = len(server.worker_pids())

        if "admission" in sections:
            run_admission(args, report, server, seed, pg_url)
        if "billing" in sections:
            run_section(report, "billing", lambda: billing.billing_bench(url, pg_url, projects=args.billing_projects))
        if "ingest" in sections:
            run_section(report, "ingest", lambda: billing.ingest_bench(
                server.url, key=seed["key"], slugs=seed["slugs"], seconds=args.seconds, clients=4))
        if "gateway" in sections:
            report.sections["gateway"] = run_gateway(args, report, server, seed, url, pg_url)
        if "grpc" in sections:
            report.sections["grpc"] = run_grpc(args, report, server, seed, url, pg_url)
    except KeyboardInterrupt:
        print("\nbench: interrupted; cleaning up", file=sys.stderr)
        return 130
    except (RuntimeError, psycopg.Error) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    finally:
        if server is not None:
            server.stop()
        if not args.keep_db:
            try:
                stack.database_drop(url)
            except psycopg.Error as exc:
                print(f"bench: could not drop {stack.database_name(url)} ({exc}); drop it later with: "
                      f"psql -c 'DROP DATABASE \"{stack.database_name(url)}\" WITH (FORCE)'", file=sys.stderr)
    report.total_seconds = time.monotonic() - started
    print(report.render())
    return 0


def step(text: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {text}", file=sys.stderr, flush=True)


def metered(result: dict) -> dict:
    """Says on stderr which processes a run's CPU figures cover (the report prints the figures)."""
    cpu = result.get("cpu")
    if cpu:
        server = f"{cpu['app_processes']} server processes" if cpu["app_processes"] else "the clients' own CPU"
        step(f"  CPU metered: {server}, {cpu['db_backends']} database backends ({cpu['db_new']} new during the run, "
             f"{cpu['db_gone']} ended)")
    return result


def run_section(report: Report, name: str, fn) -> None:
    step(f"{name} bench")
    try:
        report.sections[name] = fn()
    except billing.NotAvailable as exc:
        report.sections[name] = {"not_available": str(exc)}


def settle(pg_url: str) -> None:
    """Between timed runs: vacuum what the last run wrote and flush it, so that autovacuum and a
    checkpoint triggered by one run do not land on the CPU time of the next (measured: without this,
    the app's 100-wallet run after the floor's lost up to half its throughput)."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE")
        conn.execute("CHECKPOINT")


def run_admission(args, report: Report, server: "stack.Server", seed: dict, pg_url: str) -> None:
    # Each worker imports the URLconf and the views on its first request and psycopg prepares the hot
    # statements after a few executions: warm up (not counted) so the runs measure the steady state.
    step("admission warm-up: wrk, 2 s (not counted)")
    admission.admission_run(server.url, key=seed["key"], slugs=seed["slugs"], seconds=2, connections=args.clients)
    for label, slugs, wallets in (
        ("100 wallets", seed["slugs"], seed["wallets"]),
        ("hot wallet", [seed["hot"]], [seed["hot_wallet"]]),
    ):
        settle(pg_url)
        step(f"admission floor, {label}: {args.clients} psycopg processes, {args.seconds:.0f} s")
        result = floor.floor_run(pg_url, wallets=wallets, revenue=seed["revenue_account"], vm_type=seed["vm_type"],
                                 amount=AMOUNT_MICROS, clients=args.clients, seconds=args.seconds,
                                 tag=f"floor-{label[:3].strip()}")
        result["pairs_per_s"] = result["pairs"] / result["seconds"]
        report.admission[(label, "floor")] = metered(result)
        settle(pg_url)
        step(f"admission app, {label}: wrk, {args.clients} connections, {args.seconds:.0f} s")
        sampler = None
        if args.profile and label == "100 wallets":
            sampler = profile.start(server.worker_pids(), seconds=max(3.0, args.seconds - 2))
        report.admission[(label, "app")] = metered(admission.admission_run(
            server.url, key=seed["key"], slugs=slugs, seconds=args.seconds, connections=args.clients,
            meter=CpuMeter(pg_url, server.worker_pids)))
        if sampler is not None:
            report.profile = profile.finish(sampler)


def floor_100_wallets(args, report: Report, seed: dict, pg_url: str) -> dict:
    """The admission section's SQL floor over 100 wallets; measured here when that section did not run."""
    if ("100 wallets", "floor") in report.admission:
        return report.admission[("100 wallets", "floor")]
    settle(pg_url)
    step(f"SQL floor, 100 wallets: {args.clients} psycopg processes, {args.seconds:.0f} s")
    result = floor.floor_run(pg_url, wallets=seed["wallets"], revenue=seed["revenue_account"], vm_type=seed["vm_type"],
                             amount=AMOUNT_MICROS, clients=args.clients, seconds=args.seconds, tag="floor-100")
    result["pairs_per_s"] = result["pairs"] / result["seconds"]
    return metered(result)


def http_100_wallets(args, report: Report, server: "stack.Server", seed: dict, pg_url: str) -> dict:
    """The admission section's HTTP run over 100 wallets; measured here when that section did not run."""
    if ("100 wallets", "app") in report.admission:
        return report.admission[("100 wallets", "app")]
    step("admission warm-up: wrk, 2 s (not counted)")
    admission.admission_run(server.url, key=seed["key"], slugs=seed["slugs"], seconds=2, connections=args.clients)
    settle(pg_url)
    step(f"admission app, 100 wallets: wrk, {args.clients} connections, {args.seconds:.0f} s")
    return metered(admission.admission_run(server.url, key=seed["key"], slugs=seed["slugs"], seconds=args.seconds,
                                           connections=args.clients, meter=CpuMeter(pg_url, server.worker_pids)))


def run_gateway(args, report: Report, server: "stack.Server", seed: dict, url: str, pg_url: str) -> dict:
    step("gateway: seed a project key and a metered route; nginx with the shipped config")
    gateway_seed = stack.run_json(url, "bench.gateway_seed")
    key, path = gateway_seed["key"], gateway_seed["path"]
    result = {"floor": floor_100_wallets(args, report, seed, pg_url)}
    nginx = gateway.Gateway(creditservice_port=server.port)
    try:
        # Warm-up (not counted): the workers' first authorize imports the gateway's views and loads its routes.
        step("gateway warm-up: wrk, 2 s (not counted)")
        gateway.calls_run(f"http://127.0.0.1:{nginx.port}", key=key, path=path, seconds=2, connections=args.clients)
        step(f"nginx direct (no auth_request): wrk, {args.clients} connections, {args.seconds:.0f} s")
        result["direct"] = metered(gateway.calls_run(f"http://127.0.0.1:{nginx.direct_port}", key=key, path=path,
                                                     seconds=args.seconds, connections=args.clients,
                                                     meter=CpuMeter(pg_url, server.worker_pids)))
        settle(pg_url)
        step(f"nginx gateway (metered): wrk, {args.clients} connections, {args.seconds:.0f} s")
        result["gateway"] = metered(gateway.gateway_run(nginx, pg_url, key=key, project_id=gateway_seed["project_id"],
                                                        path=path, seconds=args.seconds, connections=args.clients,
                                                        meter=CpuMeter(pg_url, server.worker_pids)))
    finally:
        nginx.stop()
    return result


def run_grpc(args, report: Report, server: "stack.Server", seed: dict, url: str, pg_url: str) -> dict:
    result = {"http": http_100_wallets(args, report, server, seed, pg_url)}
    step("grpc: manage.py grpc_serve")
    grpc_server = grpc_admission.GrpcServer(url)
    run = uuid.uuid4().hex[:12]
    try:
        grpc_server.wait_ready()
        step(f"grpc warm-up: {args.clients} client processes, 2 s (not counted)")
        grpc_admission.grpc_run(grpc_server.address, key=seed["key"], slugs=seed["slugs"], seconds=2,
                                clients=args.clients, tag=f"grpc-warm-{run}")
        settle(pg_url)
        step(f"grpc, 100 wallets: {args.clients} client processes, one channel each, {args.seconds:.0f} s")
        result["grpc"] = metered(grpc_admission.grpc_run(
            grpc_server.address, key=seed["key"], slugs=seed["slugs"], seconds=args.seconds, clients=args.clients,
            tag=f"grpc-{run}", meter=CpuMeter(pg_url, grpc_server.pids)))
    finally:
        grpc_server.stop()
    return result


if __name__ == "__main__":
    sys.exit(main())
