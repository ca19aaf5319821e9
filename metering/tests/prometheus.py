"""A real Prometheus for the collector's tests, fed known samples, plus tiny fake stores for faults.

The samples are back-filled with `promtool tsdb create-blocks-from openmetrics` into a temporary
data directory before the server starts, so every query answer is known in advance. The data lives
at a fixed past time (BASE) with a retention long enough that Prometheus never deletes it.
"""

import json
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import BinaryIO
from urllib.parse import parse_qs, urlparse

# 15-minute windows from BASE (a window start); the tests set BILLING_WINDOW_MINUTES = 15.
BASE = datetime(2026, 11, 1, 0, 0, tzinfo=UTC)
WINDOW = timedelta(minutes=15)
WINDOWS = 3
STEP_SECONDS = 15

# What the data holds, per 15-minute window (w0, w1, w2):
# - acme's VM "a" runs the whole time: vm_running_seconds_total +900 per window → 0.25 vm-hours each.
# - beta's VM "c" runs the first 450 s only → 0.125 vm-hours in w0, then nothing (the series stays flat).
# - "ghost" (no such project) runs in w2 only.
# - acme holds 1.1 GiB of storage: avg_over_time(...) * 900 s comes back as 990.0000000000001
#   GiB-seconds (float noise) → exactly 0.275 GiB-hours once quantized.
# - acme sends 0.5 GiB of egress per step: +30 GiB per window.
VM_QUERY = "sum by (project) (increase(vm_running_seconds_total[{window}]))"
STORAGE_QUERY = "sum by (project) (avg_over_time(storage_gib[{window}])) * {window_seconds}"
EGRESS_QUERY = "sum by (project) (increase(egress_gib_total[{window}]))"


def window_start(index: int) -> datetime:
    return BASE + index * WINDOW


def _openmetrics() -> str:
    start = int(BASE.timestamp())
    end = start + WINDOWS * int(WINDOW.total_seconds())
    steps = range(0, end - start + 1, STEP_SECONDS)
    lines = ["# HELP vm_running_seconds Seconds each VM has been running.", "# TYPE vm_running_seconds counter"]
    lines += [f'vm_running_seconds_total{{project="acme",vm="a"}} {s} {start + s}' for s in steps]
    lines += [f'vm_running_seconds_total{{project="beta",vm="c"}} {min(s, 450)} {start + s}' for s in steps]
    ghost_from = 2 * int(WINDOW.total_seconds())
    lines += [f'vm_running_seconds_total{{project="ghost",vm="g"}} {s - ghost_from} {start + s}'
              for s in steps if s >= ghost_from]
    lines += ["# HELP storage_gib Block storage held.", "# TYPE storage_gib gauge"]
    lines += [f'storage_gib{{project="acme"}} 1.1 {start + s}' for s in steps]
    lines += ["# HELP egress_gib Egress sent.", "# TYPE egress_gib counter"]
    lines += [f'egress_gib_total{{project="acme"}} {s // STEP_SECONDS * 0.5} {start + s}' for s in steps]
    return "\n".join(lines + ["# EOF"]) + "\n"


def binaries_present() -> bool:
    return bool(shutil.which("prometheus") and shutil.which("promtool"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class PrometheusServer:
    url: str
    process: subprocess.Popen
    directory: Path
    log: BinaryIO

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.log.close()
        shutil.rmtree(self.directory, ignore_errors=True)


def start_prometheus(ready_timeout: float = 60) -> PrometheusServer:
    directory = Path(tempfile.mkdtemp(prefix="cs-prometheus-"))
    data = directory / "data"
    (directory / "samples.om").write_text(_openmetrics())
    subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(directory / "samples.om"), str(data)],
                   check=True, capture_output=True)
    # Nothing to scrape: the back-filled blocks are the whole data set.
    (directory / "prometheus.yml").write_text("global:\n  scrape_interval: 15s\nscrape_configs: []\n")
    port = free_port()
    log = open(directory / "prometheus.log", "wb")  # stays open for the life of the process
    process = subprocess.Popen(
        ["prometheus", f"--config.file={directory / 'prometheus.yml'}", f"--storage.tsdb.path={data}",
         f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=100y"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    server = PrometheusServer(url=f"http://127.0.0.1:{port}", process=process, directory=directory, log=log)
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log.close()
            output = (directory / "prometheus.log").read_text(errors="replace")[-2000:]
            shutil.rmtree(directory, ignore_errors=True)
            raise RuntimeError(f"prometheus exited with {process.returncode}: {output}")
        try:
            with urllib.request.urlopen(f"{server.url}/-/ready", timeout=1) as response:
                if response.status == 200:
                    return server
        except OSError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError("prometheus did not become ready")


class FakeStore:
    """A tiny HTTP server on loopback answering /api/v1/query with whatever a test needs.

    delay: seconds before the answer starts. trickle: seconds between the bytes of the body, so that
    every read gets something well within a socket timeout while the whole answer takes far longer.
    respond() may also return None: the store closes the connection without answering.
    """

    def __init__(self, respond: Callable[[], tuple[int, bytes] | None], delay: float = 0.0, trickle: float = 0.0):
        self.requests = 0
        self.queries: list[str] = []  # the `time` parameter of each query: which window was asked for
        store = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                store.requests += 1
                store.queries.append(parse_qs(urlparse(self.path).query).get("time", [""])[0])
                if delay:
                    time.sleep(delay)
                answer = respond()
                if answer is None:
                    self.close_connection = True
                    return
                status, body = answer
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    if not trickle:
                        self.wfile.write(body)
                    for i in range(len(body) if trickle else 0):
                        self.wfile.write(body[i:i + 1])
                        self.wfile.flush()
                        time.sleep(trickle)
                except OSError:
                    pass  # the client gave up (the timeout tests)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def json_body(payload: object) -> bytes:
    return json.dumps(payload).encode()
