"""`manage.py grpc_serve`: the gRPC admission API (quotas/grpc_api) on GRPC_HOST:GRPC_PORT until INT or TERM."""

import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand

# Seconds the calls under way get to finish once the server is told to stop.
STOP_GRACE_SECONDS = 5


class Command(BaseCommand):
    help = "Serve the gRPC admission API (creditservice.admission.v1.Admission) beside the web server."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=None, help="Bind address (GRPC_HOST, 127.0.0.1 by default).")
        parser.add_argument("--port", type=int, default=None, help="Port (GRPC_PORT, 50051 by default).")

    def handle(self, *args, host: str | None, port: int | None, **options):
        from quotas.grpc_api.server import AdmissionServer

        server = AdmissionServer(host=host or settings.GRPC_HOST, port=settings.GRPC_PORT if port is None else port,
                                 max_workers=settings.GRPC_MAX_WORKERS)
        stopping = threading.Event()

        def stop(signum, frame):
            stopping.set()

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        server.start()
        self.stdout.write(f"gRPC admission API on {server.address} ({settings.GRPC_MAX_WORKERS} workers)")
        stopping.wait()
        server.stop(STOP_GRACE_SECONDS)
        self.stdout.write("gRPC admission API stopped")
