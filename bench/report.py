"""Renders the bench's figures beside the speed issue's targets (bench/targets.py; printed, never asserted)."""

import os
import platform
import statistics
from dataclasses import dataclass, field
from datetime import UTC, datetime

from . import targets
from .proc_cpu import per_unit_us

# Load average (1 min) at the start above which the report warns that other work shared the cores.
BUSY_LOAD = 1.0


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return float("nan")


def _versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    parts = [f"Python {platform.python_version()}"]
    for dist in ("Django", "djangorestframework", "psycopg", "gunicorn"):
        try:
            parts.append(f"{dist} {version(dist)}")
        except PackageNotFoundError:
            pass
    return ", ".join(parts)


def _ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


@dataclass
class Report:
    seconds: float
    clients: int
    postgres: str = "?"
    workers: int = 0
    total_seconds: float = 0.0
    admission: dict = field(default_factory=dict)
    sections: dict = field(default_factory=dict)
    profile: dict | None = None
    queries: dict | None = None
    load_before: tuple[float, float, float] = field(default_factory=os.getloadavg)

    def render(self) -> str:
        out = [
            f"creditservice bench, {datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
            f"machine: {os.cpu_count()} CPUs ({_cpu_model()}), {_memory_gib():.1f} GiB",
            f"versions: {_versions()}, PostgreSQL {self.postgres}",
            f"server: make serve (gunicorn, scripts/gunicorn.conf.py, {self.workers} workers); "
            f"{self.clients} clients, {self.seconds:.0f} s per run",
        ]
        if self.load_before[0] > BUSY_LOAD:
            out.append(f"warning: load average {self.load_before[0]:.2f} at the start (above ~{BUSY_LOAD:g}): other work "
                       "shared the cores, so pairs/s and latencies are below a quiet machine's; the CPU µs/pair "
                       "columns move much less")
        out.append("")
        out += self._targets()
        if self.admission:
            out += self._admission()
        if "billing" in self.sections:
            out += self._billing(self.sections["billing"])
        if "ingest" in self.sections:
            out += self._ingest(self.sections["ingest"])
        if "gateway" in self.sections:
            out += self._gateway(self.sections["gateway"])
        if "grpc" in self.sections:
            out += self._grpc(self.sections["grpc"])
        if self.queries:
            out += self._queries()
        if self.profile:
            out += self._profile()
        before, after = self.load_before, os.getloadavg()
        out.append(f"total bench time {self.total_seconds:.0f} s; load average (1/5/15 min) "
                   f"{before[0]:.2f}/{before[1]:.2f}/{before[2]:.2f} at the start, "
                   f"{after[0]:.2f}/{after[1]:.2f}/{after[2]:.2f} at the end "
                   "(above ~1 at the start: something else was using the cores)")
        return "\n".join(out)

    def _targets(self) -> list[str]:
        """The speed issue's table: each target, this run's figure and whether it is met (by how much)."""
        adm, sec = self.admission, self.sections
        billing, ingest, grpc = sec.get("billing") or {}, sec.get("ingest") or {}, sec.get("grpc") or {}
        labels = {"clients": self.clients, "projects": billing.get("projects", 100_000),
                  "batch": ingest.get("batch", 1000), "ingest_clients": ingest.get("clients", 4)}
        rows = []

        def ratio_row(target, app, floor):
            if app is None or floor is None:
                return target, None, _not_run(adm, "admission")
            value = _ratio(app["pairs_per_s"], floor["pairs_per_s"])
            return target, value, f"{value:.2f} ({app['pairs_per_s']:.1f} / {floor['pairs_per_s']:.1f} pairs/s)"

        rows.append(ratio_row(targets.ADMISSION_100, adm.get(("100 wallets", "app")), adm.get(("100 wallets", "floor"))))
        app100 = adm.get(("100 wallets", "app"))
        rows.append((targets.P99_100, app100["p99_ms"], f"{app100['p99_ms']:.1f} ms") if app100
                    else (targets.P99_100, None, _not_run(adm, "admission")))
        rows.append(ratio_row(targets.HOT_WALLET, adm.get(("hot wallet", "app")), adm.get(("hot wallet", "floor"))))
        deployed = [r["seconds"] for r in billing.get("deployed", [])]
        floors = [seconds for seconds, _ in billing.get("floors", [])]
        if deployed and floors:
            value = _ratio(_median(deployed), _median(floors))
            rows.append((targets.BILLING, value, f"{value:.2f}× ({_median(deployed):.2f} s / {_median(floors):.2f} s)"))
        else:
            why = billing.get("not_available") or billing.get("deployed_not_available")
            rows.append((targets.BILLING, None, f"not available: {why}" if why else _not_run(billing, "billing")))
        if "events_per_s" in ingest:
            rows.append((targets.INGEST, ingest["events_per_s"], f"{ingest['events_per_s']:,.0f} events/s"))
        else:
            why = ingest.get("not_available")
            rows.append((targets.INGEST, None, f"not available: {why}" if why else _not_run(ingest, "ingest")))
        if "grpc" in grpc and "http" in grpc:
            g, h = grpc["grpc"]["pairs_per_s"], grpc["http"]["pairs_per_s"]
            figure = f"{g:.1f} vs {h:.1f} pairs/s over HTTP ({_ratio(g, h):.2f}×)"
            g_cpu, h_cpu = (per_unit_us(grpc[kind].get("cpu"), grpc[kind]["pairs"], "app_s") for kind in ("grpc", "http"))
            if g_cpu is not None and h_cpu is not None:
                figure += f"; app CPU {g_cpu:,.0f} vs {h_cpu:,.0f} µs/pair"
            rows.append((targets.GRPC, g, figure))
        else:
            rows.append((targets.GRPC, None, _not_run(grpc, "grpc")))
        table = [(target.figure.format(**labels), target.text(), figure,
                  target.verdict(value) if value is not None else "—") for target, value, figure in rows]
        head = ("figure", "target", "this run", "met")
        widths = [max(len(cells[i]) for cells in (head, *table)) for i in range(4)]
        out = ["Targets of the speed issue (wall-clock figures; on a busy machine see the load warning and CPU columns)"]
        for cells in (head, tuple("-" * w for w in widths), *table):
            out.append("| " + " | ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)) + " |")
        out += self._cpu_estimate()
        out.append("")
        return out

    def _cpu_estimate(self) -> list[str]:
        """app/floor from CPU per pair: what the first target's ratio would be if the cores were the only
        limit. It moves much less with other load than the pairs/s ratio."""
        app, floor = self.admission.get(("100 wallets", "app")), self.admission.get(("100 wallets", "floor"))
        if not (app and floor and app.get("cpu") and floor.get("cpu") and app["pairs"] and floor["pairs"]):
            return []
        floor_us = (floor["cpu"]["app_s"] + floor["cpu"]["db_s"]) * 1e6 / floor["pairs"]
        app_us = (app["cpu"]["app_s"] + app["cpu"]["db_s"] + app.get("client_cpu_s", 0.0)) * 1e6 / app["pairs"]
        return [f"  on CPU, 100 wallets: floor {floor_us:,.0f} µs/pair (clients + db), app {app_us:,.0f} µs/pair "
                f"(workers + db + wrk): floor/app {_ratio(floor_us, app_us):.2f}",
                "  (the first row's ratio if CPU were the only limit; it moves much less with other load than pairs/s)"]

    def _admission(self) -> list[str]:
        out = [
            "Admission: reserve then commit (2 HTTP calls per pair; Bearer key, Idempotency-Key per call)",
            f"  {'':<12} {'':<10} {'pairs':>8} {'pairs/s':>9} {_cpu_header('pair')} "
            f"{'p50 ms':>8} {'p99 ms':>8}  errors",
        ]
        pairs_per_s = {}
        for label in ("100 wallets", "hot wallet"):
            for kind in ("floor", "app"):
                row = self.admission.get((label, kind))
                if row is None:
                    continue
                pairs_per_s[(label, kind)] = row["pairs_per_s"]
                name = "SQL floor" if kind == "floor" else "app (HTTP)"
                out.append(f"  {label:<12} {name:<10} {row['pairs']:>8} {row['pairs_per_s']:>9.1f} "
                           f"{_cpu_columns(row, row['pairs'])} {row['p50_ms']:>8.1f} {row['p99_ms']:>8.1f}  "
                           f"{_errors(row)}")
        out.append("  (p50/p99: per call for the app, over reserve and commit calls together, from wrk's latency")
        out.append("   distribution; per transaction for the floor)")
        out.append("  (app CPU µs/pair: user + system CPU time (/proc/<pid>/stat) over the timed run, per pair, of the")
        out.append("   gunicorn workers; for the SQL floor, of its client processes (their own process_time). db CPU")
        out.append("   µs/pair: the same for the PostgreSQL backends of the bench database (pg_stat_activity at the")
        out.append("   start and the end; a backend that appeared during the run counts whole). CPU per pair moves far")
        out.append("   less with other load than pairs/s: compare it between runs on a shared machine)")
        out += _cpu_notes(self.admission.items())
        cpu = [(label, row["client_cpu_s"] / row["seconds"]) for (label, kind), row in self.admission.items()
               if kind == "app" and row.get("seconds")]
        if cpu:
            out.append("  load generator (wrk) CPU: " + ", ".join(f"{share:.0%} of one core ({label})" for label, share in cpu))
        for label, target in (("100 wallets", targets.ADMISSION_100), ("hot wallet", targets.HOT_WALLET)):
            if (label, "app") in pairs_per_s and (label, "floor") in pairs_per_s:
                ratio = _ratio(pairs_per_s[(label, "app")], pairs_per_s[(label, "floor")])
                out.append(f"  app/floor, {label:<12} {ratio:>6.2f}     {_against(target, ratio)}")
            if label == "100 wallets" and (label, "app") in self.admission:
                p99 = self.admission[(label, "app")]["p99_ms"]
                out.append(f"  p99 per call, 100 wallets {p99:>6.1f} ms  {_against(targets.P99_100, p99)}")
        if ("hot wallet", "app") in pairs_per_s and ("100 wallets", "app") in pairs_per_s:
            ratio = _ratio(pairs_per_s[("hot wallet", "app")], pairs_per_s[("100 wallets", "app")])
            out.append(f"  app hot/100 wallets     {ratio:>6.2f}     no target")
        for (label, kind), row in self.admission.items():
            for status, body in (row.get("samples") or {}).items():
                out.append(f"  sample {status} answer ({label}, {kind}): {body[:200]}")
        out.append("")
        return out

    def _billing(self, row: dict) -> list[str]:
        if "not_available" in row:
            return [f"Billing run: not available: {row['not_available']}", ""]
        windows = row["windows"]
        out = [f"Billing run over {row['projects']:,} projects, one window of usage each "
               f"(windows {windows[0]} … {windows[-1]})"]
        floor = _median([seconds for seconds, _ in row["floors"]])
        deployed = [r["seconds"] for r in row["deployed"]]
        if deployed:
            workers = max(r.get("workers", 0) for r in row["deployed"])
            out.append(f"  as deployed          {_median(deployed):>8.2f} s  "
                       f"{_ratio(row['deployed'][0]['charges'], _median(deployed)):>10.0f} charges/s  "
                       f"median of {_list(deployed)}; the admin's task on a Celery worker, {workers} processes took chunks")
        if "deployed_not_available" in row:
            out.append(f"  as deployed          not available: {row['deployed_not_available']}")
        if "single" in row:
            single = row["single"]["seconds"]
            out.append(f"  one process          {single:>8.2f} s  {_ratio(row['single']['charges'], single):>10.0f} charges/s  "
                       "(billing_run_execute in the bench's own process)")
        elif "single_not_available" in row:
            out.append(f"  one process          not available: {row['single_not_available']}")
        if row["floors"]:
            out.append(f"  SQL floor            {floor:>8.2f} s  {_ratio(row['floors'][0][1], floor):>10.0f} rows/s  "
                       f"median of {_list([s for s, _ in row['floors']])}; one UPDATE of balances + one INSERT … SELECT "
                       "of ledger rows + their draws from the grants (INSERT of draws, UPDATE of remaining)")
            if deployed:
                out.append(f"  run/floor            {_ratio(_median(deployed), floor):>8.2f}    as deployed; "
                           f"{_against(targets.BILLING, _ratio(_median(deployed), floor))}")
            if "single" in row:
                out.append(f"  one process/floor    {_ratio(row['single']['seconds'], floor):>8.2f}")
        out += [f"  note: {note}" for note in row.get("notes", [])]
        out.append("")
        return out

    def _ingest(self, row: dict) -> list[str]:
        if "not_available" in row:
            return [f"Usage ingestion: not available: {row['not_available']}", ""]
        return [
            f"Usage ingestion: POST /api/v1/usage/events, batches of {row['batch']}, {row['clients']} clients",
            f"  {row['events_per_s']:>10.0f} events/s accepted   {_against(targets.INGEST, row['events_per_s'])}",
            f"  {row['batches']} batches in {row['seconds']:.1f} s, p50 {row['p50_ms']:.0f} ms, p99 {row['p99_ms']:.0f} ms "
            f"per batch; {_errors(row)}",
            "",
        ]

    def _gateway(self, row: dict) -> list[str]:
        out = ["Gateway: a metered GET through nginx (deploy/nginx's config, auth_request to make serve) to an",
               "upstream answering 204 (nginx itself); wrk, one charge per call under nginx's $request_id",
               f"  {'':<32} {'calls':>8} {'calls/s':>9} {_cpu_header('call')} {'p50 ms':>8} "
               f"{'p99 ms':>8}  errors"]
        for kind, name in (("direct", "nginx direct (no auth_request)"), ("gateway", "nginx gateway (metered)")):
            if kind in row:
                run = row[kind]
                out.append(f"  {name:<32} {run['calls']:>8} {run['calls_per_s']:>9.1f} {_cpu_columns(run, run['calls'])} "
                           f"{run['p50_ms']:>8.1f} {run['p99_ms']:>8.1f}  {_errors(run)}")
        out.append("  (app CPU: the gunicorn workers, which answer nginx's auth_request; nginx's own CPU is not counted.")
        out.append("   db CPU: the bench database's backends. Both per call over the timed run, as in Admission)")
        out += _cpu_notes((kind, row[kind]) for kind in ("direct", "gateway") if kind in row)
        metered = row.get("gateway")
        if metered:
            out.append(f"  charges {metered['charges']} = {metered['answered_2xx']} 2xx answers (nginx's log) + "
                       f"{metered['abandoned']} calls wrk abandoned at its stop (499); wrk read {metered['calls']} 2xx; "
                       f"each 2xx charged exactly once: {'yes' if metered['exactly_once'] else 'NO'}")
            if "direct" in row:
                out.append(f"  gateway/direct          {_ratio(metered['calls_per_s'], row['direct']['calls_per_s']):>6.2f}")
            floor = row.get("floor")
            if floor:
                out.append(f"  gateway/SQL floor       {_ratio(metered['calls_per_s'], floor['pairs_per_s']):>6.2f}   "
                           f"calls/s over the admission floor's pairs/s (100 wallets, {floor['pairs_per_s']:.1f}); "
                           "a call is one charge, a floor pair two transactions")
            for status, body in (metered.get("samples") or {}).items():
                out.append(f"  sample {status} answer (gateway): {body[:200]}")
        out.append("")
        return out

    def _grpc(self, row: dict) -> list[str]:
        out = ["Admission over gRPC: Reserve then Commit (2 calls per pair), manage.py grpc_serve, "
               f"{self.clients} client processes with one channel each; 100 wallets",
               f"  {'':<12} {'pairs':>8} {'pairs/s':>9} {_cpu_header('pair')} {'p50 ms':>8} "
               f"{'p99 ms':>8}  errors"]
        for kind, name in (("grpc", "gRPC"), ("http", "HTTP (wrk)")):
            if kind in row:
                run = row[kind]
                out.append(f"  {name:<12} {run['pairs']:>8} {run['pairs_per_s']:>9.1f} {_cpu_columns(run, run['pairs'])} "
                           f"{run['p50_ms']:>8.1f} {run['p99_ms']:>8.1f}  {_errors(run)}")
        if "grpc" in row and "http" in row:
            out.append(f"  gRPC/HTTP    {_ratio(row['grpc']['pairs_per_s'], row['http']['pairs_per_s']):>6.2f}     "
                       f"{targets.GRPC.text()}")
        out.append("  (p50/p99 per call, over reserve and commit calls together. app CPU: the grpc_serve process for")
        out.append("   gRPC, the gunicorn workers for HTTP; db CPU: the bench database's backends; per pair, as in Admission)")
        out += _cpu_notes((kind, row[kind]) for kind in ("grpc", "http") if kind in row)
        out.append("")
        return out

    def _queries(self) -> list[str]:
        if "error" in self.queries:
            return [f"SQL per call: {self.queries['error']}", ""]
        out = []
        for call, statements in self.queries.items():
            out.append(f"SQL statements of one {call} call: {len(statements)}")
            out += [f"  {i:>2}. {sql[:160]}" for i, sql in enumerate(statements, 1)]
        out.append("")
        return out

    def _profile(self) -> list[str]:
        prof = self.profile or {}
        if "error" in prof:
            return [f"Profile: {prof['error']}", ""]
        out = [f"Profile of the web workers, 100-wallet run (py-spy, {prof['samples']} samples on CPU)",
               "  inclusive (share of samples with the function on the stack):"]
        out += [f"    {share:6.1%}  {name}" for name, share in prof["inclusive"]]
        out.append("  the project's own code, inclusive:")
        out += [f"    {share:6.1%}  {name}" for name, share in prof.get("project", [])]
        out.append("  self (share of samples in the function itself):")
        out += [f"    {share:6.1%}  {name}" for name, share in prof["self"]]
        out.append("")
        return out


def _cpu_header(unit: str) -> str:
    return f"{'app CPU µs/' + unit:>16} {'db CPU µs/' + unit:>15}"


def _cpu_columns(row: dict, units: int) -> str:
    app, db = (per_unit_us(row.get("cpu"), units, key) for key in ("app_s", "db_s"))
    return f"{_us(app):>16} {_us(db):>15}"


def _us(value: float | None) -> str:
    return "—" if value is None else f"{value:,.0f}"


def _cpu_notes(rows) -> list[str]:
    """What the CPU columns miss: processes that ended during a run took their CPU time with them."""
    out = []
    for key, row in rows:
        cpu = row.get("cpu") or {}
        name = " ".join(key) if isinstance(key, tuple) else key
        if cpu.get("app_gone"):
            out.append(f"  note ({name}): {cpu['app_gone']} server process(es) ended during the run; their CPU is not counted")
        if cpu.get("db_gone"):
            out.append(f"  note ({name}): {cpu['db_gone']} database backend(s) ended during the run; their CPU is not counted")
    return out


def _against(target: "targets.Target", value: float) -> str:
    return f"target {target.text()}: {target.verdict(value)}"


def _not_run(section, name: str) -> str:
    return f"not run (--only without {name})" if not section else "not measured"


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def _list(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values) + " s"


def _errors(row: dict) -> str:
    parts = [f"{status}: {count}" for status, count in sorted((row.get("errors") or {}).items())]
    parts += [f"socket {kind}: {count}" for kind, count in (row.get("socket_errors") or {}).items()]
    for key in ("refused", "failed", "no_id"):
        if row.get(key):
            parts.append(f"{key}: {row[key]}")
    return ", ".join(parts) or "none"
