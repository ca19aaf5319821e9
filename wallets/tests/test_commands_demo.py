"""The demo key of `make run`: kept where only its owner reads it, shown at start-up, or how to make one."""

import stat

from django.core.management import call_command
from django.utils import timezone

from creditservice.testing.fixtures import ServiceClient
from wallets.auth import api_key_create
from wallets.models import ApiKey


def seed(capsys) -> str:
    call_command("seed_demo")
    return capsys.readouterr().out


def test_seed_demo_keeps_the_platform_key_in_a_file_only_its_owner_reads(db, capsys, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    out = seed(capsys)

    path = tmp_path / "demo-api-key"
    key = path.read_text().strip()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert key not in out
    assert "var/demo-api-key" in out
    assert ServiceClient(key).get("/api/v1/projects/").status_code == 200


def test_a_second_seed_says_where_the_key_is(db, capsys, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    seed(capsys)

    out = seed(capsys)
    assert "already seeded" in out
    assert "var/demo-api-key" in out


def test_a_seeded_database_without_the_key_on_file_says_how_to_make_one(db, capsys, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    seed(capsys)
    # The file outlives a switch of DATABASE_URL: a key of another database is not offered.
    (tmp_path / "demo-api-key").write_text("cs_a-key-of-another-database\n")

    out = seed(capsys)
    assert "already seeded" in out
    assert "manage.py create_api_key demo" in out


def test_demo_access_prints_urls_logins_and_the_key(db, capsys, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    settings.DEBUG = True
    seed(capsys)
    key = (tmp_path / "demo-api-key").read_text().strip()

    call_command("demo_access")
    box = capsys.readouterr().out
    assert key in box
    assert f"http://127.0.0.1:{settings.PORT}/admin/" in box
    assert "admin / admin" in box and "tenant / tenant" in box
    assert "manage.py create_api_key NAME" in box


def test_demo_access_never_shows_a_revoked_key(db, capsys, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    seed(capsys)
    key = (tmp_path / "demo-api-key").read_text().strip()
    ApiKey.objects.update(revoked_at=timezone.now())

    call_command("demo_access")
    box = capsys.readouterr().out
    assert key not in box
    assert "make one:" in box and "manage.py create_api_key demo" in box


def test_demo_access_never_shows_a_project_key(db, capsys, project, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    _, raw_key = api_key_create(name="scoped", project=project)
    (tmp_path / "demo-api-key").write_text(raw_key)

    call_command("demo_access")
    assert raw_key not in capsys.readouterr().out


def test_with_debug_off_the_demo_users_get_random_passwords_printed_once(db, capsys, settings, tmp_path):
    from django.contrib.auth import authenticate
    from django.test import RequestFactory

    settings.VAR_DIR = tmp_path
    settings.DEBUG = False
    out = seed(capsys)
    request = RequestFactory().post("/accounts/login/")
    assert authenticate(request, username="admin", password="admin") is None
    assert authenticate(request, username="tenant", password="tenant") is None
    logins = dict(line.split(" ") for line in (tmp_path / "demo-logins").read_text().splitlines())
    assert stat.S_IMODE((tmp_path / "demo-logins").stat().st_mode) == 0o600
    assert len(logins["admin"]) >= 16 and logins["admin"] != logins["tenant"]
    assert f"admin / {logins['admin']}" in out
    assert authenticate(request, username="admin", password=logins["admin"]).is_superuser
    call_command("demo_access")
    assert f"admin / {logins['admin']}" in capsys.readouterr().out


def test_with_debug_on_the_demo_logins_are_the_documented_ones(db, capsys, settings, tmp_path):
    from django.contrib.auth import get_user_model

    settings.VAR_DIR = tmp_path
    settings.DEBUG = True
    assert "admin / admin" in seed(capsys)
    assert get_user_model().objects.get(username="admin").check_password("admin")
    assert not (tmp_path / "demo-logins").exists()
