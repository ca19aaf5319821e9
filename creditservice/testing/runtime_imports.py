"""Print, as JSON, the installed distributions that the runtime entry points import.

The entry points are the ones `make run`, `make serve` and docker-compose start: the web app (WSGI
under gunicorn, or runserver), every management command, a Celery worker and beat on the filesystem
broker and on Redis. kombu's Redis transport imports `packaging` without declaring it, so declared
requirements alone cannot tell what the runtime needs: this imports the chains and reads sys.modules.
Run it with `python -m creditservice.testing.runtime_imports`; nothing here opens a connection.
"""

import importlib
import json
import pkgutil
import re
import sys
from importlib import metadata
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent.parent

# What the worker, beat, gunicorn and the database backends load on top of Django's app registry.
ENTRY_MODULES = (
    "creditservice.wsgi",
    "creditservice.celery",
    "celery.bin.celery",
    "celery.apps.worker",
    "celery.apps.beat",
    "celery.worker.components",
    "celery.concurrency.solo",
    "celery.concurrency.prefork",
    "kombu.transport.filesystem",
    "kombu.transport.redis",
    "django_celery_beat.schedulers",
    "gunicorn.app.wsgiapp",
    "gunicorn.workers.sync",
    "django.db.backends.postgresql.base",
    "creditservice.lib.postgresql_backend.base",
    "django.db.backends.sqlite3.base",
    "django.core.management.commands.runserver",
    "django.contrib.staticfiles.management.commands.collectstatic",
    "django.contrib.staticfiles.management.commands.runserver",
)
# Modules a Cython-compiled extension (grpcio's cygrpc) registers for its shared runtime: no file of their
# own and no distribution; the extension's own distribution is found through it.
CYTHON_RUNTIME_MODULES = re.compile(r"cython_runtime|_cython_\d+_\d+_\d+")


def project_packages() -> list[str]:
    """The project's own top-level packages (apps and configuration), test modules left out."""
    return [
        path.parent.name
        for path in sorted(BASE_DIR.glob("*/__init__.py"))
        if path.parent.name not in ("bench",)
    ]


def import_runtime() -> None:
    import django
    from django.conf import settings
    from django.core.management import get_commands, load_command_class
    from django.urls import get_resolver

    django.setup()
    for name in ENTRY_MODULES:
        importlib.import_module(name)
    for package in project_packages():
        module = importlib.import_module(package)
        for info in pkgutil.walk_packages(module.__path__, prefix=f"{package}."):
            if ".tests" in info.name or info.name.endswith(".testing") or ".testing." in info.name:
                continue
            importlib.import_module(info.name)
    for name, app in get_commands().items():
        load_command_class(app, name)
    get_resolver().url_patterns  # noqa: B018  (imports every view)
    # Transports are chosen by URL at start-up; building one imports its client library, no I/O.
    from creditservice.celery import app as celery_app

    for url in ("redis://127.0.0.1:1/0", "filesystem://"):
        celery_app.connection_for_write(url).transport  # noqa: B018
    importlib.import_module(settings.CELERY_BEAT_SCHEDULER.split(":")[0])


def imported_distributions(before: set[str]) -> tuple[set[str], set[str]]:
    """(distributions, unowned top-level modules) for modules imported after `before`."""
    owners = metadata.packages_distributions()
    stdlib = set(sys.stdlib_module_names)
    ours = set(project_packages()) | {"bench", "conftest"}
    found, unowned = set(), set()
    for name in set(sys.modules) - before:
        top = name.partition(".")[0]
        if top in stdlib or top in ours or top == "__main__" or CYTHON_RUNTIME_MODULES.fullmatch(top):
            continue
        if top in owners:
            found.update(owners[top])
        else:
            unowned.add(top)
    return found, unowned


def main() -> int:
    before = set(sys.modules)
    import_runtime()
    found, unowned = imported_distributions(before)
    json.dump({"distributions": sorted(found), "unowned": sorted(unowned)}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
