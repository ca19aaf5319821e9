"""The gRPC server: the Admission service, standard health checking (grpc.health.v1) and server
reflection (so grpcurl needs no .proto file). Served by `manage.py grpc_serve`; tests start it in-process."""

import threading
from concurrent import futures

import grpc
from django.db import connections
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from .servicer import AdmissionServicer, pb2, pb2_grpc

SERVICE_NAME = pb2.DESCRIPTOR.services_by_name["Admission"].full_name
# A call's message is a few hundred bytes; this bounds what a client can make the server read.
MAX_MESSAGE_BYTES = 64 * 1024


class AdmissionServer:
    def __init__(self, *, host: str, port: int, max_workers: int):
        self.max_workers = max_workers
        self.executor = futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="grpc")
        self.server = grpc.server(self.executor,
                                  options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)])
        pb2_grpc.add_AdmissionServicer_to_server(AdmissionServicer(), self.server)
        self.health = health.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection((SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), self.server)
        # Port 0: the system picks a free one (tests); the bound port is what callers dial.
        self.port = self.server.add_insecure_port(f"{host}:{port}")
        if self.port == 0:
            raise OSError(f"could not listen on {host}:{port}")
        self.address = f"{host}:{self.port}"

    def start(self) -> None:
        self.server.start()
        for service in ("", SERVICE_NAME):  # "": the server as a whole
            self.health.set(service, health_pb2.HealthCheckResponse.SERVING)

    def stop(self, grace_seconds: float) -> None:
        """Say NOT_SERVING first, so a balancer stops sending; calls under way get grace_seconds to finish."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace_seconds).wait()
        self._close_worker_connections()

    def _close_worker_connections(self) -> None:
        """Each worker thread keeps its database connection between calls (CONN_MAX_AGE, as a web worker
        does); a connection can only be closed by its own thread. One task per worker, each holding its
        thread at a barrier until all have started, so every thread of the pool runs exactly one."""
        barrier = threading.Barrier(self.max_workers)

        def close_own() -> None:
            connections.close_all()
            try:
                barrier.wait(timeout=10)
            except threading.BrokenBarrierError:
                pass

        for _ in range(self.max_workers):
            self.executor.submit(close_own)
        self.executor.shutdown(wait=True)

    def wait(self) -> None:
        self.server.wait_for_termination()
