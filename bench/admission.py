"""The admission bench through HTTP: wrk with admission.lua against the production server."""

import json
import os
import resource
import shutil
import subprocess
import uuid
from pathlib import Path

from .proc_cpu import CpuMeter

LUA = Path(__file__).with_name("admission.lua")
WRK = shutil.which("wrk") or "/usr/bin/wrk"


def wrk_run(url: str, *, script: Path, env: dict[str, str], connections: int, threads: int,
            seconds: float, timeout_s: int = 10, meter: CpuMeter | None = None) -> dict:
    """Runs wrk; returns the BENCH_RESULT JSON its done() prints, plus wrk's own text as "text" and,
    with a meter, the server's and the database's CPU over the run as "cpu"."""
    cmd = [WRK, f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", f"--timeout={timeout_s}s",
           "--latency", "-s", str(script), url]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    if meter is not None:
        meter.start()
    done = subprocess.run(cmd, env={**os.environ, **env}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=seconds + 120)
    cpu = meter.stop() if meter is not None else None
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    for line in done.stdout.splitlines():
        if line.startswith("BENCH_RESULT "):
            result = json.loads(line.removeprefix("BENCH_RESULT "))
            result["text"] = done.stdout
            result["client_cpu_s"] = client_cpu
            result["cpu"] = cpu
            return result
    raise RuntimeError(f"wrk printed no result (exit {done.returncode}):\n{done.stdout}")


def admission_run(url: str, *, key: str, slugs: list[str], seconds: float, connections: int = 16,
                  threads: int = 2, amount: str = "0.01", meter: CpuMeter | None = None) -> dict:
    env = {"BENCH_KEY": key, "BENCH_SLUGS": ",".join(slugs), "BENCH_AMOUNT": amount,
           "BENCH_RUN": uuid.uuid4().hex[:12]}
    result = wrk_run(url, script=LUA, env=env, connections=connections, threads=threads, seconds=seconds,
                      meter=meter)
    duration = result["duration_us"] / 1e6
    return {
        "pairs": result["commits"],
        "seconds": duration,
        "pairs_per_s": result["commits"] / duration if duration else 0.0,
        "requests": result["requests"],
        "reserves": result["reserves"],
        "p50_ms": result["p50_us"] / 1000,
        "p99_ms": result["p99_us"] / 1000,
        "errors": result["errors"],
        "samples": result["samples"],
        "no_id": result["no_id"],
        "client_cpu_s": result["client_cpu_s"],
        "cpu": result["cpu"],
        "socket_errors": {k: v for k, v in result["socket_errors"].items() if v},
    }
