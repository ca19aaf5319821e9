"""create_api_key and seed_demo, as an operator runs them."""

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from creditservice.testing.fixtures import ServiceClient
from wallets.models import ApiKey, Project
from wallets.selectors import ledger_check


def test_create_api_key_prints_the_key_alone_on_its_last_line(project, capsys):
    call_command("create_api_key", "vm-controller", "--project", "acme")
    key = capsys.readouterr().out.strip().splitlines()[-1]
    assert ApiKey.objects.get(name="vm-controller").project == project
    assert ServiceClient(key).get("/api/v1/projects/acme/wallet").status_code == 200


def test_create_api_key_refuses_an_unknown_project(db):
    with pytest.raises(CommandError):
        call_command("create_api_key", "x", "--project", "nope")
    assert not ApiKey.objects.exists()


def test_seed_demo_seeds_once(db, capsys, settings, tmp_path):
    settings.VAR_DIR = tmp_path
    call_command("seed_demo")
    key = (tmp_path / "demo-api-key").read_text().strip()
    call_command("seed_demo")
    assert "already seeded" in capsys.readouterr().out
    assert set(Project.objects.values_list("slug", flat=True)) == {"acme", "globex"}
    assert ServiceClient(key).get("/api/v1/projects/acme/wallet").json()["balance"] == "250"
    assert ledger_check().ok
