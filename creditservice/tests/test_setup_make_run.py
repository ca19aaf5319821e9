"""`make run` as a new user meets it: a private .env written once, static files served with DEBUG=0."""

import shutil
import stat
import subprocess
import sys
from pathlib import Path

from django.core.management import call_command
from django.test import Client

BASE_DIR = Path(__file__).resolve().parent.parent.parent


def make(directory: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["make", "--no-print-directory", "-C", str(directory), f"PYTHON={sys.executable}", *args],
        capture_output=True, text=True, timeout=60,
    )


def copy_makefile(tmp_path: Path) -> Path:
    for name in ("Makefile", "requirements.txt", "requirements-dev.txt"):
        shutil.copy(BASE_DIR / name, tmp_path / name)
    return tmp_path


def test_make_run_writes_a_private_env_with_debug_and_a_random_secret_once(tmp_path):
    tree = copy_makefile(tmp_path)
    assert make(tree, ".env").returncode == 0

    env_file = tree / ".env"
    first = env_file.read_text()
    assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
    values = dict(line.split("=", 1) for line in first.splitlines() if line and not line.startswith("#"))
    assert values["DEBUG"] == "1"
    assert len(values["SECRET_KEY"]) >= 50

    assert make(tree, ".env").returncode == 0
    assert env_file.read_text() == first


def test_make_run_never_touches_an_existing_env(tmp_path):
    tree = copy_makefile(tmp_path)
    (tree / ".env").write_text("SECRET_KEY=mine\n")
    assert make(tree, ".env").returncode == 0
    assert (tree / ".env").read_text() == "SECRET_KEY=mine\n"


def test_make_run_collects_static_files_before_it_serves(tmp_path):
    # Dry run: the commands make run would execute, in order.
    result = make(copy_makefile(tmp_path), "-n", "run")
    assert result.returncode == 0, result.stderr
    commands = result.stdout.splitlines()
    collect = next(i for i, line in enumerate(commands) if "manage.py collectstatic" in line)
    serve = next(i for i, line in enumerate(commands) if "scripts/run_all.sh" in line)
    assert collect < serve
    assert not any(line.startswith("DEBUG=") for line in commands)


def test_with_debug_off_the_admin_css_is_served_once_collected(settings, tmp_path):
    settings.DEBUG = False
    settings.STATIC_ROOT = tmp_path
    settings.WHITENOISE_AUTOREFRESH = False
    settings.WHITENOISE_USE_FINDERS = False
    assert Client().get("/static/admin/css/base.css").status_code == 404

    call_command("collectstatic", "--noinput", verbosity=0)
    response = Client().get("/static/admin/css/base.css")
    assert response.status_code == 200
    assert b"".join(response.streaming_content)
