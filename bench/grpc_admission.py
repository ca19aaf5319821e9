"""The admission bench over gRPC: `manage.py grpc_serve` on a free port for the bench database, and
client processes each keeping one channel open (as wrk keeps its connections alive), each doing
Reserve then Commit, the pair the HTTP section measures, with the same key, projects and amount.
Processes, so the client side is not held by the GIL; spawned, because gRPC does not survive a fork.
"""

import multiprocessing as mp
import subprocess
import sys
import time
from array import array
from collections import Counter

from creditservice.testing.nginx import free_port, wait_until_answering

from .floor import percentile
from .proc_cpu import CpuMeter
from .stack import ROOT, app_env, stop_process_group


class GrpcServer:
    """`manage.py grpc_serve` as deployed (GRPC_MAX_WORKERS from the settings), in its own process group."""

    def __init__(self, database_url: str) -> None:
        self.port = free_port()
        self.log_path = ROOT / "var" / "bench-grpc.log"
        self.log_path.parent.mkdir(exist_ok=True)
        self._log = open(self.log_path, "w")  # noqa: SIM115 (kept open for the server's life)
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "grpc_serve"], cwd=ROOT,
            env=app_env(database_url, GRPC_HOST="127.0.0.1", GRPC_PORT=str(self.port)),
            stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.address = f"127.0.0.1:{self.port}"

    def pids(self) -> list[int]:
        """The server's process (grpc_serve is one process: its calls run on a thread pool)."""
        return [self.proc.pid] if self.proc.poll() is None else []

    def wait_ready(self, timeout: float = 60) -> None:
        wait_until_answering(self.port, self.proc, self.log_path, seconds=timeout)

    def stop(self) -> None:
        stop_process_group(self.proc, grace=15)
        self._log.close()


def _client(*args) -> None:
    try:
        _client_loop(*args)
    except KeyboardInterrupt:  # Ctrl-C reaches every process of the group; the parent cleans up
        pass


def _client_loop(address: str, key: str, slugs: list[str], amount: str, tag: str, index: int, seconds: float,
                 ready: "mp.Queue", go: "mp.Event", start: "mp.Value", out: "mp.Queue") -> None:
    import grpc

    from quotas.grpc_api.build import modules

    pb2, pb2_grpc = modules()
    latencies = array("d")
    pairs = 0
    errors: Counter[str] = Counter()
    metadata = (("authorization", f"Bearer {key}"),)
    with grpc.insecure_channel(address) as channel:
        stub = pb2_grpc.AdmissionStub(channel)
        grpc.channel_ready_future(channel).result(timeout=30)
        ready.put(index)
        go.wait()
        end = start.value + seconds
        n = 0
        while time.time() < end:
            n += 1
            slug = slugs[(n * 7 + index) % len(slugs)]
            try:
                t0 = time.perf_counter()
                reservation = stub.Reserve(pb2.ReserveRequest(
                    project=slug, resource_type="vm", quantity="1", amount=amount,
                    idempotency_key=f"{tag}-{index}-{n}-r"), metadata=metadata, timeout=30)
                t1 = time.perf_counter()
                stub.Commit(pb2.CommitRequest(reservation_id=reservation.id, idempotency_key=f"{tag}-{index}-{n}-c"),
                            metadata=metadata, timeout=30)
                t2 = time.perf_counter()
            except grpc.RpcError as exc:
                errors[exc.code().name] += 1
                continue
            pairs += 1
            latencies.append(t1 - t0)
            latencies.append(t2 - t1)
    out.put((pairs, dict(errors), latencies.tobytes()))


def grpc_run(address: str, *, key: str, slugs: list[str], seconds: float, clients: int, tag: str,
             amount: str = "0.01", meter: CpuMeter | None = None) -> dict:
    """pairs/s and per-call latency of `clients` processes for `seconds`; with a meter, the server's and
    the database's CPU over the run ("cpu")."""
    ctx = mp.get_context("spawn")
    out, ready, go, start = ctx.Queue(), ctx.Queue(), ctx.Event(), ctx.Value("d", 0.0)
    procs = [ctx.Process(target=_client, args=(address, key, slugs, amount, tag, i, seconds, ready, go, start, out))
             for i in range(clients)]
    for proc in procs:
        proc.start()
    # The clock starts when every client has imported gRPC and connected its channel.
    for _ in procs:
        ready.get(timeout=120)
    if meter is not None:
        meter.start()
    start.value = time.time()
    go.set()
    results = [out.get(timeout=seconds + 120) for _ in procs]
    cpu = meter.stop() if meter is not None else None
    for proc in procs:
        proc.join()
    latencies = array("d")
    errors: Counter[str] = Counter()
    for _, errs, raw in results:
        latencies.frombytes(raw)
        errors.update(errs)
    ordered = sorted(latencies)
    pairs = sum(r[0] for r in results)
    return {
        "pairs": pairs,
        "seconds": seconds,
        "pairs_per_s": pairs / seconds,
        "p50_ms": percentile(ordered, 50) * 1000,
        "p99_ms": percentile(ordered, 99) * 1000,
        "errors": dict(errors),
        "cpu": cpu,
    }
