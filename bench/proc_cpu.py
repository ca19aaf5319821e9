"""CPU time of the processes a timed run keeps busy, from /proc/<pid>/stat (utime + stime).

On a shared machine wall-clock pairs/s moves 2× with other load; the CPU a pair costs moves much
less, so the report prints both. Two sets are sampled at the start and the end of a run: the server
processes (the gunicorn workers, grpc_serve) and the PostgreSQL backends of the bench database
(pg_stat_activity). A process that appears during the run counts whole; one that ends during it is
lost (its /proc entry is gone), so the meter counts those and the report says so.
"""

import os
from collections.abc import Callable

import psycopg

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
# Every backend of the bench database but the meter's own connection (autovacuum and parallel
# workers of that database included: the run's writes cause them).
_BACKENDS = "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"


def process_cpu_s(pid: int) -> float | None:
    """utime + stime of one process in seconds; None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            stat = fh.read()
    except OSError:
        return None
    # The command name (field 2) may contain spaces: the fields after its closing ")" start at field 3.
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_S


def _sample(pids: list[int]) -> dict[int, float]:
    return {pid: cpu for pid in pids if (cpu := process_cpu_s(pid)) is not None}


def _delta(start: dict[int, float], end: dict[int, float]) -> tuple[float, int]:
    """CPU seconds between the samples (new processes whole) and how many processes ended in between."""
    total = sum(cpu - start.get(pid, 0.0) for pid, cpu in end.items())
    return total, len(start.keys() - end.keys())


class CpuMeter:
    """start() and stop() around a timed run; stop() returns the CPU seconds of both sets.

    `server_pids` lists the server's processes (None: the caller measures its own clients, as the
    SQL floor does, and passes their CPU to stop())."""

    def __init__(self, pg_url: str, server_pids: Callable[[], list[int]] | None = None) -> None:
        self.pg_url = pg_url
        self.server_pids = server_pids
        self._conn: psycopg.Connection | None = None

    def _backend_pids(self) -> list[int]:
        return [row[0] for row in self._conn.execute(_BACKENDS)]

    def start(self) -> None:
        self._conn = psycopg.connect(self.pg_url, autocommit=True)
        self._app = _sample(self.server_pids()) if self.server_pids else {}
        self._db = _sample(self._backend_pids())

    def stop(self, *, client_cpu_s: float | None = None) -> dict:
        try:
            db_end = _sample(self._backend_pids())
        finally:
            self._conn.close()
        app_end = _sample(self.server_pids()) if self.server_pids else {}
        app_s, app_gone = _delta(self._app, app_end)
        db_s, db_gone = _delta(self._db, db_end)
        new_backends = len(db_end.keys() - self._db.keys())
        return {
            "app_s": client_cpu_s if client_cpu_s is not None else app_s,
            "db_new": new_backends,
            "app_processes": len(app_end),
            "app_gone": app_gone,
            "db_s": db_s,
            "db_backends": len(db_end),
            "db_gone": db_gone,
        }


def per_unit_us(cpu: dict | None, units: int, key: str) -> float | None:
    """CPU microseconds per pair (or call) of one set; None when the run was not metered."""
    if not cpu or not units:
        return None
    return cpu[key] * 1e6 / units
