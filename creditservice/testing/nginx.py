"""Debian's nginx with the shipped gateway config (deploy/nginx/), started on free ports in a scratch
directory: one implementation for the gateway tests (gateway/tests/test_nginx_gateway.py) and the
bench's gateway section (bench/gateway.py). Imports nothing of Django.
"""

import getpass
import importlib.util
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DEPLOY = Path(__file__).resolve().parent.parent.parent / "deploy" / "nginx"
NGINX = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/sbin")


def render_gateway_conf(**values: str) -> str:
    """deploy/nginx/render.py's render() (a script, not a package: loaded by path)."""
    spec = importlib.util.spec_from_file_location("gateway_nginx_render", DEPLOY / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.render(**values)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_answering(port: int, process: subprocess.Popen, log: Path, seconds: float = 60) -> None:
    """Until something accepts connections on the port; an error (with the log) if the process exits first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"it exited with {process.returncode}: {log.read_text() if log.exists() else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing answered on port {port}: {log.read_text() if log.exists() else ''}")


@contextmanager
def gateway_nginx(tmp: Path, *, creditservice_port: int, upstream_port: int, extra_http: str = "",
                  worker_processes: int | str = 1, **values: str) -> Iterator[tuple[int, Path]]:
    """nginx with the shipped gateway config rendered for these ports (values: more of the template's
    placeholders, such as WHEN_UNREACHABLE); extra_http: more of nginx's http {} block (server blocks of
    the caller's own). Yields (the gateway's port, its access log)."""
    prefix = tmp / f"nginx-{free_port()}"
    prefix.mkdir()
    port = free_port()
    access_log = prefix / "access.log"
    (prefix / "gateway.conf").write_text(render_gateway_conf(
        GATEWAY_LISTEN=f"127.0.0.1:{port}", CREDITSERVICE_ADDR=f"127.0.0.1:{creditservice_port}",
        UPSTREAM_ADDR=f"127.0.0.1:{upstream_port}", ACCESS_LOG=str(access_log), **values))
    temp = "".join(f"{name}_temp_path {prefix / name};\n" for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    # Run as root (a container), nginx's workers would switch to "nobody", who cannot write the logs here.
    user = f"user {getpass.getuser()};\n" if os.geteuid() == 0 else ""
    (prefix / "nginx.conf").write_text(
        f"{user}worker_processes {worker_processes};\npid {prefix / 'nginx.pid'};\nerror_log {prefix / 'error.log'};\n"
        f"events {{ worker_connections 512; }}\nhttp {{\n{temp}access_log off;\ninclude {prefix / 'gateway.conf'};\n"
        f"{extra_http}\n}}\n")
    stderr_log = prefix / "stderr.log"
    with open(stderr_log, "w") as stderr:
        process = subprocess.Popen([NGINX, "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g", "daemon off;"],
                                   stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
    try:
        wait_until_answering(port, process, stderr_log, seconds=20)
        yield port, access_log
    finally:
        process.terminate()
        process.wait(timeout=30)
