"""The Docker image: `COPY . .` must leave out the secrets and local state (.env, var/, .git).

The rules are read as Docker reads them (each line a path pattern from the context's root, `**` for any
depth, `!` to take a path back in, the last matching line wins), and a path is left out when it or any
of its parent folders is."""

import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _rules() -> list[tuple[bool, str]]:
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            rules.append((line.startswith("!"), line.lstrip("!").strip("/")))
    return rules


def _matches(pattern: str, path: str) -> bool:
    if fnmatch.fnmatchcase(path, pattern):
        return True
    # "**/x" also matches "x" at the root.
    return pattern.startswith("**/") and fnmatch.fnmatchcase(path, pattern[3:])


def ignored(path: str) -> bool:
    parts = path.split("/")
    for depth in range(1, len(parts) + 1):
        prefix = "/".join(parts[:depth])
        verdict = None
        for negated, pattern in _rules():
            if _matches(pattern, prefix):
                verdict = not negated
        if verdict:
            return True
    return False


def test_the_image_leaves_out_secrets_and_local_state():
    for path in (".env", ".env.production", ".git", ".git/config", "var", "var/db.sqlite3", "var/demo-api-key",
                 "var/demo-logins", "var/celery/out/x.msg", ".venv/bin/python", "staticfiles/admin/css/base.css",
                 "wallets/__pycache__/models.cpython-311.pyc", "db.sqlite3", "test-output/report.xml"):
        assert ignored(path), path


def test_the_image_keeps_what_it_runs():
    for path in ("manage.py", "requirements.txt", "creditservice/settings.py", "wallets/models.py",
                 "templates/base.html", "static", "scripts/gunicorn.conf.py", ".env.example",
                 "billing/templates/admin/billing/run_billing.html"):
        assert not ignored(path), path


def test_the_dockerfile_copies_the_context_that_this_list_filters():
    assert "COPY . ." in (ROOT / "Dockerfile").read_text()
