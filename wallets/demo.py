"""The demo `make run` seeds: where its platform key is kept and the access box printed at start-up.

Secrets: the demo key goes to var/demo-api-key (mode 0600, var/ is gitignored) and to the console box
`make run` prints for the developer, nowhere else: it is written to stdout, never through logging.
The demo logins are admin/admin and tenant/tenant only with DEBUG on; seeded with DEBUG off, each gets a
random password, kept the same way in var/demo-logins and shown in the box while it still works.
"""

import os
import secrets
import sys
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model

from .auth import hash_key
from .models import ApiKey

DEMO_KEY_FILE_NAME = "demo-api-key"
DEMO_LOGINS_FILE_NAME = "demo-logins"
DEMO_USERS = ("admin", "tenant")


def demo_key_path() -> Path:
    return Path(settings.VAR_DIR) / DEMO_KEY_FILE_NAME


def _write_private(path: Path, text: str) -> Path:
    """Write a file readable by its owner only (created 0600, and chmod in case it existed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    return path


def demo_key_save(raw_key: str) -> Path:
    return _write_private(demo_key_path(), f"{raw_key}\n")


def demo_passwords() -> dict[str, str]:
    """The demo users' passwords: the well-known ones only in DEBUG, otherwise new random ones each seed."""
    if settings.DEBUG:
        return {username: username for username in DEMO_USERS}
    return {username: secrets.token_urlsafe(12) for username in DEMO_USERS}


def demo_logins_save(passwords: dict[str, str]) -> Path:
    lines = "".join(f"{username} {password}\n" for username, password in passwords.items())
    return _write_private(Path(settings.VAR_DIR) / DEMO_LOGINS_FILE_NAME, lines)


def demo_logins() -> dict[str, str]:
    """username → password for the box: the saved ones that still work in this database, else the DEBUG ones."""
    User = get_user_model()
    try:
        saved = dict(line.split(" ", 1) for line in
                     (Path(settings.VAR_DIR) / DEMO_LOGINS_FILE_NAME).read_text().splitlines() if " " in line)
    except OSError:
        saved = {}
    logins = {}
    for username in DEMO_USERS:
        user = User.objects.filter(username=username).first()
        for password in (saved.get(username), username):
            if user is not None and password and user.check_password(password):
                logins[username] = password
                break
    return logins


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
    logins = demo_logins()

    def login(username: str) -> str:
        password = logins.get(username, f"(unknown: {manage} changepassword {username})")
        return f"{username} / {password}".ljust(18)

    rows = [
        ("web", f"{base_url}/  (API docs: {base_url}/api/docs/, metrics: {base_url}/metrics)"),
        ("gRPC", f"{settings.GRPC_HOST}:{settings.GRPC_PORT}  (creditservice.admission.v1.Admission, reflection on)"),
        ("staff", f"{login('admin')} {base_url}/admin/"),
        ("tenant", f"{login('tenant')} {base_url}/portal/  (owns project acme)"),
        ("API key", key_line),
        ("new key", f"{manage} create_api_key NAME [--project SLUG]"),
        ("ledger", f"{manage} check_ledger"),
    ]
    embedded = Path(settings.DATABASES["default"]["NAME"]) == Path(settings.VAR_DIR) / "db.sqlite3"
    rule = "+" + "-" * 78
    lines = [rule, "| creditservice is running. Ctrl-C stops the web server, the gRPC server, the worker and beat."]
    lines += [f"|   {label:<8} {value}" for label, value in rows]
    if not embedded:
        lines.append("|   (run manage.py with the same DATABASE_URL, in the environment or in .env)")
    lines.append(rule)
    return lines
