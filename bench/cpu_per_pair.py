"""CPU time per reserve + commit pair through creditservice.wsgi.application, the production WSGI entry.

One process, no server and no load generator: the CPU time of this process is what our Python costs per
pair, and it moves little when other work shares the machine (wall time does). Used to compare two
checkouts A/B when the machine is not quiet enough for `make bench`:

    createdb -h 127.0.0.1 -U postgres cs_cpu
    DEBUG=0 SECRET_KEY=… DATABASE_URL=postgres://postgres@127.0.0.1:5432/cs_cpu PAIRS=3000 \
        .venv/bin/python -m bench.cpu_per_pair 2>/dev/null

It migrates and seeds the demo into that database, then reserves and commits 0.01 credits of `globex`
PAIRS times (after 300 to warm up) with the demo key, and prints CPU and wall microseconds per pair.
"""
import io
import json
import os
import sys
import time

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "creditservice.settings")
import django  # noqa: E402

django.setup()
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402

call_command("migrate", "--noinput", verbosity=0)
call_command("seed_demo", verbosity=0, stdout=io.StringIO())
key = (settings.BASE_DIR / "var" / "demo-api-key").read_text().strip()
from creditservice.wsgi import application  # noqa: E402


def call(method, path, body, idem):
    data = json.dumps(body).encode()
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
               "SERVER_PORT": "8000", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(data),
               "CONTENT_LENGTH": str(len(data)), "CONTENT_TYPE": "application/json", "HTTP_HOST": "127.0.0.1",
               "HTTP_AUTHORIZATION": f"Bearer {key}", "HTTP_IDEMPOTENCY_KEY": idem, "wsgi.errors": sys.stderr,
               "wsgi.version": (1, 0), "wsgi.multithread": False, "wsgi.multiprocess": True, "wsgi.run_once": False}
    status = []
    out = b"".join(application(environ, lambda s, h, e=None: status.append(s)))
    return status[0], out

run = os.environ.get("RUN", str(time.time()))
def pair(i):
    s, out = call("POST", "/api/v1/reservations", {"project": "globex", "resource_type": "vm", "quantity": "1", "amount": "0.01"}, f"{run}-r{i}")
    assert s.startswith("201"), (s, out[:300])
    rid = json.loads(out)["id"]
    s, out = call("POST", f"/api/v1/reservations/{rid}/commit", {}, f"{run}-c{i}")
    assert s.startswith("200"), (s, out[:300])

for i in range(300):
    pair(i)


def backend_cpu_s() -> float:
    """CPU seconds of this process's PostgreSQL backend so far (the server runs on this machine)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


n = int(os.environ.get("PAIRS", 3000))
d0 = backend_cpu_s()
c0, w0 = time.process_time(), time.perf_counter()
for i in range(300, 300 + n):
    pair(i)
c1, w1 = time.process_time(), time.perf_counter()
d1 = backend_cpu_s()
print(f"{n} pairs: CPU {1e6*(c1-c0)/n:.0f} us/pair, wall {1e6*(w1-w0)/n:.0f} us/pair, "
      f"db backend CPU {1e6*(d1-d0)/n:.0f} us/pair")
