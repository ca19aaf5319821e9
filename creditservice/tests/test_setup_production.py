"""Production settings (DEBUG=0, outside the test suite), read in a fresh process as a server reads them:
`manage.py check --deploy` is clean (only the documented silenced checks), the session and CSRF cookies are
Secure, HttpOnly (the session's) and SameSite, and email never goes to the console."""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Each silenced --deploy warning is a decision documented in settings.py beside SILENCED_SYSTEM_CHECKS.
DOCUMENTED_SILENCED = {"security.W008", "security.W005", "security.W021"}


def _production_env(tmp_path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DJANGO_", "EMAIL_", "SESSION_", "CSRF_", "SECURE_", "STRIPE_", "PYTEST"))}
    env.update(DEBUG="0", CREDITSERVICE_TESTING="0", SECRET_KEY=secrets.token_urlsafe(50),
               DATABASE_URL=f"sqlite:///{tmp_path / 'deploy.sqlite3'}", ALLOWED_HOSTS="billing.example.com",
               SITE_URL="https://billing.example.com", CELERY_BROKER_URL="memory://",
               # Set, even empty, so that a developer's .env (read outside the suite) cannot fill it in.
               EMAIL_BACKEND="")
    env.update(extra)
    return env


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def _settings(env: dict[str, str], *names: str) -> dict:
    code = ("import json, django; django.setup(); from django.conf import settings; "
            f"print(json.dumps({{n: getattr(settings, n) for n in {list(names)!r}}}, default=str))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**env, "DJANGO_SETTINGS_MODULE": "creditservice.settings"})
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_check_deploy_is_clean_with_debug_off(tmp_path):
    env = _production_env(tmp_path, EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
                          STRIPE_SECRET_KEY="sk_live_x", STRIPE_WEBHOOK_SECRET="whsec_x")
    done = _manage(env, "check", "--deploy", "--fail-level", "WARNING")
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert f"System check identified no issues ({len(DOCUMENTED_SILENCED)} silenced)" in done.stdout
    silenced = _settings(env, "SILENCED_SYSTEM_CHECKS")["SILENCED_SYSTEM_CHECKS"]
    assert set(silenced) == DOCUMENTED_SILENCED


def test_production_cookies_are_secure_http_only_and_same_site(tmp_path):
    names = ("SESSION_COOKIE_SECURE", "SESSION_COOKIE_HTTPONLY", "SESSION_COOKIE_SAMESITE", "CSRF_COOKIE_SECURE",
             "CSRF_COOKIE_SAMESITE", "SECURE_HSTS_SECONDS", "EMAIL_BACKEND", "AUTHENTICATION_BACKENDS")
    production = _settings(_production_env(tmp_path), *names)
    assert production["SESSION_COOKIE_SECURE"] is True and production["CSRF_COOKIE_SECURE"] is True
    assert production["SESSION_COOKIE_HTTPONLY"] is True
    assert production["SESSION_COOKIE_SAMESITE"] == production["CSRF_COOKIE_SAMESITE"] == "Lax"
    assert production["SECURE_HSTS_SECONDS"] >= 31_536_000
    # No EMAIL_BACKEND and DEBUG off: nothing is sent, and nothing goes to the console (the server log).
    assert production["EMAIL_BACKEND"] == "creditservice.lib.mail.UnsentEmailBackend"
    assert production["AUTHENTICATION_BACKENDS"][0] == "axes.backends.AxesStandaloneBackend"
    development = _settings(_production_env(tmp_path, DEBUG="1"), *names)
    assert development["SESSION_COOKIE_SECURE"] is False and development["SECURE_HSTS_SECONDS"] == 0
    assert development["EMAIL_BACKEND"] == "django.core.mail.backends.console.EmailBackend"


@pytest.mark.parametrize("backend", ["django.core.mail.backends.console.EmailBackend",
                                     "django.core.mail.backends.filebased.EmailBackend"])
def test_a_console_or_file_email_backend_outside_debug_stops_start_up(tmp_path, backend):
    done = _manage(_production_env(tmp_path, EMAIL_BACKEND=backend, EMAIL_FILE_PATH=str(tmp_path)), "check")
    assert done.returncode != 0
    assert "portal.E001" in done.stderr and "password-reset links" in done.stderr


def test_no_email_backend_outside_debug_is_said_at_start_up(tmp_path):
    done = _manage(_production_env(tmp_path), "check")
    assert done.returncode == 0
    assert "portal.W001" in done.stdout + done.stderr


def test_behind_a_tls_proxy_https_comes_from_x_forwarded_proto_only_when_trusted(tmp_path):
    names = ("SECURE_PROXY_SSL_HEADER", "CSRF_TRUSTED_ORIGINS")
    proxied = _production_env(tmp_path, TRUST_X_FORWARDED_PROTO="1",
                              CSRF_TRUSTED_ORIGINS="https://billing.example.com,https://portal.example.com",
                              EMAIL_BACKEND="django.core.mail.backends.smtp.EmailBackend",
                              STRIPE_SECRET_KEY="sk_live_x", STRIPE_WEBHOOK_SECRET="whsec_x")
    trusted = _settings(proxied, *names)
    assert trusted["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]
    assert trusted["CSRF_TRUSTED_ORIGINS"] == ["https://billing.example.com", "https://portal.example.com"]
    # Unset: a client's own X-Forwarded-Proto must not make a plain-HTTP request look secure.
    direct = _settings(_production_env(tmp_path), *names)
    assert direct["SECURE_PROXY_SSL_HEADER"] is None and direct["CSRF_TRUSTED_ORIGINS"] == []
    done = _manage(proxied, "check", "--deploy", "--fail-level", "WARNING")
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert f"System check identified no issues ({len(DOCUMENTED_SILENCED)} silenced)" in done.stdout
