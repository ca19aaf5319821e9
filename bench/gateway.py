"""The gateway bench: metered calls through Debian's nginx with the shipped config (deploy/nginx/), whose
auth_request asks the production server (make serve) to charge each call, in front of the fastest honest
upstream (nginx itself: `return 204`); beside the same nginx straight to that upstream, no auth_request.

Exactly-once sanity, from the gateway's access log (which carries $request_id, the id each call is charged
under) and the charge rows: every call answered 2xx was charged once, and every other charge belongs to a
call wrk abandoned when its clock stopped (logged 499: the client closed before the answer).
"""

import re
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import psycopg

from creditservice.testing.nginx import free_port, gateway_nginx

from .admission import wrk_run
from .proc_cpu import CpuMeter

LUA = Path(__file__).with_name("gateway.lua")
# The shipped log format: '... "$request" $status $body_bytes_sent request_id=$request_id ...'.
_LOG_LINE = re.compile(r'" (\d{3}) \d+ request_id=(\w+)')
# The charge's request id: the gateway's source prefix, then nginx's $request_id (gateway/api.py).
_REQUEST_ID_SOURCE = "req:"


def _extra_servers(*, direct_port: int, upstream_port: int, direct_log: Path) -> str:
    """The upstream (answers 204, logs nothing) and the direct path: the gateway's proxying without auth_request."""
    return f"""
log_format bench_direct '$remote_addr [$time_local] "$request" $status $body_bytes_sent request_id=$request_id rt=$request_time';
server {{
    listen 127.0.0.1:{upstream_port};
    access_log off;
    location / {{ return 204; }}
}}
server {{
    listen 127.0.0.1:{direct_port};
    access_log {direct_log} bench_direct;
    location / {{
        proxy_pass http://creditservice_metered_api;
        proxy_http_version 1.1;
        proxy_set_header Connection "";
        proxy_set_header Host $host;
        proxy_set_header X-Request-ID $request_id;
        proxy_set_header Authorization "";
    }}
}}
"""


class Gateway:
    """One nginx for both paths: the shipped gateway (port), the direct path (direct_port), the upstream."""

    def __init__(self, *, creditservice_port: int) -> None:
        self._stack = ExitStack()
        self.tmp = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-gateway-")))
        upstream_port, self.direct_port = free_port(), free_port()
        self.direct_log = self.tmp / "direct.log"
        self.port, self.access_log = self._stack.enter_context(gateway_nginx(
            self.tmp, creditservice_port=creditservice_port, upstream_port=upstream_port, worker_processes="auto",
            extra_http=_extra_servers(direct_port=self.direct_port, upstream_port=upstream_port,
                                      direct_log=self.direct_log)))

    def stop(self) -> None:
        self._stack.close()


def calls_run(url: str, *, key: str, path: str, seconds: float, connections: int, threads: int = 2,
              meter: CpuMeter | None = None) -> dict:
    result = wrk_run(url, script=LUA, env={"BENCH_KEY": key, "BENCH_PATH": path}, connections=connections,
                     threads=threads, seconds=seconds, meter=meter)
    duration = result["duration_us"] / 1e6
    return {
        "calls": result["ok"],
        "seconds": duration,
        "calls_per_s": result["ok"] / duration if duration else 0.0,
        "requests": result["requests"],
        "p50_ms": result["p50_us"] / 1000,
        "p99_ms": result["p99_us"] / 1000,
        "errors": result["errors"],
        "samples": result["samples"],
        "client_cpu_s": result["client_cpu_s"],
        "cpu": result["cpu"],
        "socket_errors": {k: v for k, v in result["socket_errors"].items() if v},
    }


def _wait_quiet(log: Path, *, quiet: float = 1.0, limit: float = 30.0) -> None:
    """Until the log has not grown for `quiet` seconds: the calls wrk left in flight have finished."""
    deadline = time.monotonic() + limit
    size, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now_size = log.stat().st_size if log.exists() else 0
        if now_size != size:
            size, since = now_size, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return
        time.sleep(0.1)


def _log_since(log: Path, offset: int) -> dict[str, str]:
    """request id → status of the lines written after `offset`."""
    with open(log, "rb") as fh:
        fh.seek(offset)
        text = fh.read().decode(errors="replace")
    return {match.group(2): match.group(1) for match in map(_LOG_LINE.search, text.splitlines()) if match}


def _max_charge_id(conn: psycopg.Connection) -> int:
    return conn.execute("SELECT coalesce(max(id), 0) FROM gateway_gatewaycharge").fetchone()[0]


def gateway_run(gateway: Gateway, pg_url: str, *, key: str, project_id: int, path: str, seconds: float,
                connections: int, meter: CpuMeter | None = None) -> dict:
    """The timed run through the gateway, then the exactly-once check of what it charged."""
    offset = gateway.access_log.stat().st_size if gateway.access_log.exists() else 0
    with psycopg.connect(pg_url, autocommit=True) as conn:
        first_id = _max_charge_id(conn)
        result = calls_run(f"http://127.0.0.1:{gateway.port}", key=key, path=path, seconds=seconds,
                           connections=connections, meter=meter)
        _wait_quiet(gateway.access_log)
        charged = [row[0].removeprefix(_REQUEST_ID_SOURCE) for row in conn.execute(
            "SELECT request_id FROM gateway_gatewaycharge WHERE project_id = %s AND id > %s", (project_id, first_id))]
    logged = _log_since(gateway.access_log, offset)
    answered = {request_id for request_id, status in logged.items() if status.startswith("2")}
    charged_set = set(charged)
    abandoned = charged_set - answered
    result.update(
        charges=len(charged),
        answered_2xx=len(answered),
        abandoned=len(abandoned),
        # Once: no id charged twice; every 2xx answer charged; any other charge a call wrk closed on (499).
        exactly_once=(len(charged_set) == len(charged) and answered <= charged_set
                      and all(logged.get(request_id) == "499" for request_id in abandoned)),
    )
    return result
