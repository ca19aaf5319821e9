"""`make run` as a person at a terminal meets it: a configuration warning is said once, not by every process
it starts, and Ctrl-C ends it quietly (no "make: *** [run] Terminated" that reads like a failure).

scripts/run_all.sh is run for real with a stand-in for Python (PY) that records how each process was started
and then waits to be stopped, like the worker, beat and web server; Ctrl-C is a SIGINT to the whole process
group, as a terminal sends it. The check itself is run in real Django processes."""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

BASE_DIR = Path(__file__).resolve().parent.parent.parent

FAKE_PY = r"""#!/usr/bin/env bash
# Records its arguments and whether the start-up checks were already shown, then acts like the process.
echo "$$ shown=${CREDITSERVICE_CHECKS_SHOWN:-} $*" >> "$RUN_LOG"
case "$*" in
  *"manage.py check"*) echo "payments.W001 (fake)" >&2; exit 0 ;;
  *demo_access*) exit 0 ;;
  *collectstatic*|*seed_demo*|*migrate*) exit 0 ;;
esac
trap 'echo "$$ stopped" >> "$RUN_LOG"; exit 0' INT TERM
while true; do sleep 0.1; done
"""


def _tree(tmp_path: Path) -> tuple[Path, Path]:
    (tmp_path / "scripts").mkdir()
    shutil.copy(BASE_DIR / "scripts" / "run_all.sh", tmp_path / "scripts" / "run_all.sh")
    shutil.copy(BASE_DIR / "Makefile", tmp_path / "Makefile")
    fake = tmp_path / "fake-python"
    fake.write_text(FAKE_PY)
    fake.chmod(0o755)
    (tmp_path / ".env").write_text("DEBUG=1\n")
    return tmp_path, fake


def _wait_for(predicate, what: str, deadline_seconds: float = 30) -> None:
    """Waits for a state (not a timing assertion): the deadline only keeps a broken script from hanging the suite."""
    deadline = time.monotonic() + deadline_seconds
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"never saw {what}")
        time.sleep(0.05)


def _lines(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def _started(log: Path) -> list[str]:
    return [line for line in _lines(log) if " shown=" in line]


def _long_running(log: Path) -> list[str]:
    return [line for line in _started(log) if "celery" in line or "runserver" in line or "grpc_serve" in line]


def _run_and_interrupt(command: list[str], tree: Path, log: Path, **extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "RUN_LOG": str(log), "PORT": "18999", **extra}
    env.pop("CREDITSERVICE_CHECKS_SHOWN", None)
    process = subprocess.Popen(command, cwd=tree, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, start_new_session=True)
    try:
        _wait_for(lambda: len(_long_running(log)) == 4, "the worker, beat, web and gRPC servers started")
        _wait_for(lambda: any("demo_access" in line for line in _started(log)), "demo_access run")
        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C at the terminal
        stdout, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


def _stopped_all(log: Path) -> None:
    pids = {line.split()[0] for line in _long_running(log)}
    stopped = {line.split()[0] for line in _lines(log) if line.endswith(" stopped")}
    assert pids <= stopped
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)


def test_run_all_shows_the_checks_once_and_ends_with_0_on_ctrl_c(tmp_path):
    tree, fake = _tree(tmp_path)
    log = tmp_path / "run.log"
    result = _run_and_interrupt(["bash", "scripts/run_all.sh"], tree, log, PY=str(fake))

    assert result.returncode == 0, result.stderr
    assert result.stderr.count("payments.W001") == 1
    checks = [line for line in _started(log) if "manage.py check" in line]
    assert len(checks) == 1 and " shown= " in checks[0]
    others = [line for line in _started(log) if line not in checks]
    # worker, beat, runserver, grpc_serve, demo_access
    assert len(others) == 5 and all(" shown=1 " in line for line in others)
    _stopped_all(log)


@pytest.mark.skipif(not shutil.which("make"), reason="needs make")
def test_make_run_ends_quietly_on_ctrl_c_and_checks_only_at_migrate(tmp_path):
    tree, fake = _tree(tmp_path)
    log = tmp_path / "run.log"
    # The venv's stamp is newer than the requirements: make takes it as set up and goes on to migrate and run.
    earlier = time.time() - 60
    for name in ("requirements.txt", "requirements-dev.txt"):
        shutil.copy(BASE_DIR / name, tree / name)
        os.utime(tree / name, (earlier, earlier))
    (tree / "venv").mkdir()
    (tree / "venv" / ".runtime").touch()
    result = _run_and_interrupt(["make", "--no-print-directory", "run", "VENV=venv", f"PY={fake}"], tree, log)

    assert "***" not in result.stderr and "Terminated" not in result.stderr and "Interrupt" not in result.stderr, (
        result.stderr)
    started = _started(log)
    # migrate ran the checks (a real one prints them); every later process was told they were shown.
    assert "migrate" in started[0] and " shown= " in started[0]
    assert not any("manage.py check" in line for line in started)
    assert all(" shown=1 " in line for line in started if "migrate" not in line and "collectstatic" not in line)
    _stopped_all(log)


def _django(tmp_path: Path, code: str, shown: bool) -> str:
    env = {key: value for key, value in os.environ.items()
           if key not in ("CREDITSERVICE_TESTING", "CREDITSERVICE_CHECKS_SHOWN", "STRIPE_SECRET_KEY")}
    env.update(DJANGO_SETTINGS_MODULE="creditservice.settings", DEBUG="1",
               DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}", **({"CREDITSERVICE_CHECKS_SHOWN": "1"} if shown else {}))
    result = subprocess.run([sys.executable, *code.split(" ", 1)] if code.startswith("manage.py") else
                            [sys.executable, "-c", code], cwd=BASE_DIR, env=env, capture_output=True, text=True,
                            timeout=120)
    return result.stdout + result.stderr


def test_manage_py_check_says_the_stripe_warning_once_and_not_when_shown(tmp_path):
    assert _django(tmp_path, "manage.py check", shown=False).count("payments.W001") == 1
    assert "payments.W001" not in _django(tmp_path, "manage.py check", shown=True)


def test_a_process_without_checks_logs_the_warning_once_and_not_when_shown(tmp_path):
    # As a Celery worker or gunicorn starts: Django set up, no system checks run.
    start = "import django; django.setup()"
    assert _django(tmp_path, start, shown=False).count("payments.W001") == 1
    assert "payments.W001" not in _django(tmp_path, start, shown=True)
