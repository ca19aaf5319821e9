"""The demo `make run` seeds: where its platform key is kept and the access box printed at start-up.

Secrets: the demo key goes to var/demo-api-key (mode 0600, var/ is gitignored) and to the console box
`make run` prints for the developer, nowhere else: it is written to stdout, never through logging.
"""

import os
import sys
from pathlib import Path

from django.conf import settings

from .auth import hash_key
from .models import ApiKey

DEMO_KEY_FILE_NAME = "demo-api-key"


def demo_key_path() -> Path:
    return Path(settings.VAR_DIR) / DEMO_KEY_FILE_NAME


def demo_key_save(raw_key: str) -> Path:
    """Write the key readable by its owner only (created 0600, and chmod in case it existed)."""
    path = demo_key_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, f"{raw_key}\n".encode())
    finally:
        os.close(fd)
    return path


def demo_key_load() -> str | None:
    """The saved key if it is a live platform key of this database (the file outlives a switch of
    DATABASE_URL, and a key can be revoked in the admin); None otherwise."""
    try:
        raw_key = demo_key_path().read_text().strip()
    except OSError:
        return None
    if not raw_key:
        return None
    live = ApiKey.objects.filter(key_hash=hash_key(raw_key), revoked_at__isnull=True, project__isnull=True)
    return raw_key if live.exists() else None


def manage_command() -> str:
    """How to call manage.py from the repository, as the developer would type it."""
    python = Path(sys.executable)
    try:
        python = python.relative_to(Path(settings.BASE_DIR))
    except ValueError:
        return "python manage.py"
    return f"{python} manage.py"


def access_box(*, base_url: str) -> list[str]:
    """The lines `make run` prints once it serves: URLs, logins, the key or how to make one."""
    manage = manage_command()
    raw_key = demo_key_load()
    key_line = (
        f"{raw_key}  (platform-wide; also in var/{DEMO_KEY_FILE_NAME})"
        if raw_key
        else f"none on file for this database; make one: {manage} create_api_key demo"
    )
    rows = [
        ("web", f"{base_url}/  (API docs: {base_url}/api/docs/)"),
        ("staff", f"admin / admin      {base_url}/admin/"),
        ("tenant", f"tenant / tenant    {base_url}/portal/  (owns project acme)"),
        ("API key", key_line),
        ("new key", f"{manage} create_api_key NAME [--project SLUG]"),
        ("ledger", f"{manage} check_ledger"),
    ]
    embedded = Path(settings.DATABASES["default"]["NAME"]) == Path(settings.VAR_DIR) / "db.sqlite3"
    rule = "+" + "-" * 78
    lines = [rule, "| creditservice is running. Ctrl-C stops the web server, the worker and beat."]
    lines += [f"|   {label:<8} {value}" for label, value in rows]
    if not embedded:
        lines.append("|   (run manage.py with the same DATABASE_URL, in the environment or in .env)")
    lines.append(rule)
    return lines
