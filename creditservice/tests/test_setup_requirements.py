"""requirements.txt carries everything the runtime imports, so a venv without the dev tools runs it."""

import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

BASE_DIR = Path(__file__).resolve().parent.parent.parent

# Imported only when installed (a try/except ImportError in the library), so not a requirement.
OPTIONAL_IMPORTS = {
    "pygments": "rest_framework.compat highlights the browsable API with it when present",
}


def runtime_requirements() -> dict[str, Requirement]:
    lines = (BASE_DIR / "requirements.txt").read_text().splitlines()
    requirements = [Requirement(line.split("#")[0].strip()) for line in lines if line.split("#")[0].strip()]
    return {canonicalize_name(r.name): r for r in requirements}


def installed_closure(roots: dict[str, Requirement]) -> set[str]:
    """The listed distributions and everything they declare, as the installed metadata says."""
    seen: set[str] = set()
    pending = [(name, set(r.extras)) for name, r in roots.items()]
    while pending:
        name, extras = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        for spec in metadata.requires(name) or ():
            dependency = Requirement(spec)
            environments = [{"extra": extra} for extra in extras] or [{"extra": ""}]
            if dependency.marker is None or any(dependency.marker.evaluate(e) for e in environments):
                pending.append((canonicalize_name(dependency.name), set(dependency.extras)))
    return seen


def imported_by_runtime() -> dict:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "creditservice.settings", "DEBUG": "1", "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(
        [sys.executable, "-m", "creditservice.testing.runtime_imports"],
        cwd=BASE_DIR, env=env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_requirements_pin_every_distribution_the_runtime_imports():
    requirements = runtime_requirements()
    closure = installed_closure(requirements)
    imported = imported_by_runtime()

    assert imported["unowned"] == []
    missing = sorted(
        name for name in map(canonicalize_name, imported["distributions"])
        if name not in closure and name not in OPTIONAL_IMPORTS
    )
    # kombu's Redis transport imports packaging without declaring it: the worker died at start-up.
    assert missing == [], f"add to requirements.txt: {missing}"


def test_every_runtime_requirement_is_pinned():
    for name, requirement in runtime_requirements().items():
        assert re.fullmatch(r"==[0-9][0-9A-Za-z.]*", str(requirement.specifier)), name
