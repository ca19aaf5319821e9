"""Optional py-spy sampling of the web workers during a run (`python -m bench --profile`).

Only samples that hold the GIL are kept (--gil): Python's own CPU work. Time spent waiting for
PostgreSQL or for a CPU (the load generator, PostgreSQL and the workers share two cores) is left out,
because on a loaded machine py-spy counts a runnable-but-waiting thread as busy.

py-spy is not a project requirement: `.venv/bin/pip install py-spy` first. It reads the workers'
stacks from outside (ptrace), with --nonblocking so the workers are not paused while sampled.
"""

import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

# gunicorn's process and accept loop: on every stack, so it says nothing about where time goes.
_LOOP = ("Arbiter.", "BaseApplication.run", "Application.run", "run (gunicorn/app", "<module> (gunicorn",
         "Worker.init_process", "SyncWorker.run", "SyncWorker.accept")
PROJECT_APPS = ("creditservice/", "wallets/", "quotas/", "metering/", "billing/", "payments/", "portal/")
ROOT = Path(__file__).resolve().parent.parent
_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def _py_spy() -> str | None:
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


def start(pids: list[int], *, seconds: float) -> dict:
    tool = _py_spy()
    if tool is None:
        return {"error": "py-spy is not installed (.venv/bin/pip install py-spy)"}
    tmp = Path(tempfile.mkdtemp(prefix="bench-profile-"))
    procs = []
    for pid in pids:
        out = tmp / f"{pid}.txt"
        procs.append((out, subprocess.Popen(
            [tool, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "200", "--nonblocking", "--gil",
             "--format", "raw", "--output", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)))
    return {"procs": procs, "tmp": tmp}


def _name(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "/lib/python3"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    else:
        path = path.removeprefix(f"{ROOT}/")
    return f"{match['func']} ({path})"


def finish(state: dict, top: int = 25) -> dict:
    if "error" in state:
        return state
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    errors = []
    for out, proc in state["procs"]:
        _, err = proc.communicate(timeout=120)
        if not out.exists():
            errors.append(err.strip()[-300:])
            continue
        for line in out.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not stack or not count.isdigit():
                continue
            samples = int(count)
            frames = [_name(f) for f in stack.split(";") if f and not f.startswith("process ") and not f.startswith("thread ")]
            if not frames:
                continue
            total += samples
            own[frames[-1]] += samples
            for name in set(frames):
                if not name.startswith(_LOOP):
                    inclusive[name] += samples
    shutil.rmtree(state["tmp"], ignore_errors=True)
    if not total:
        return {"error": "py-spy recorded nothing: " + "; ".join(errors)}
    return {
        "samples": total,
        "inclusive": [(name, n / total) for name, n in inclusive.most_common(top)],
        "self": [(name, n / total) for name, n in own.most_common(top)],
        "project": [(name, n / total) for name, n in inclusive.most_common()
                    if name.split(" (", 1)[-1].startswith(PROJECT_APPS)][:top],
    }
