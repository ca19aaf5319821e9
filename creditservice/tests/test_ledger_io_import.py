"""import_ledger into this test database (empty: migrated, only what migrations seed), from an export of a
rich ledger made on a SQLite file of its own in a subprocess. On PostgreSQL this is SQLite -> PostgreSQL.
Every refusal leaves the target as it was: still empty."""

import hashlib
import io
import json

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command

from creditservice.ledger_io.encoding import canonical
from creditservice.ledger_io.export import FORMAT_VERSION, ledger_export
from creditservice.ledger_io.load import LedgerImportRefused, ledger_import
from creditservice.testing.ledger_io import SEED_COMMAND, manage
from payments.models import CheckoutSession, StripeEvent
from quotas.models import Reservation
from wallets import services
from wallets.models import Account, Project, Transfer
from wallets.selectors import full_check

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def source_export(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("ledger_source")
    url = f"sqlite:///{folder / 'source.sqlite3'}"
    manage(url, "migrate", "--noinput", "-v", "0")
    manage(url, *SEED_COMMAND)
    return manage(url, "export_ledger", "-").stdout


def lines_of(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def text_of(lines: list[dict]) -> str:
    return "".join(canonical(line) + "\n" for line in lines)


def load(text: str) -> dict[str, int]:
    return ledger_import(source=io.StringIO(text))


def assert_still_empty() -> None:
    assert not Project.objects.exists()
    assert not Transfer.objects.exists()
    assert not get_user_model().objects.exists()
    assert set(Account.objects.values_list("kind", flat=True)) == {"system"}


def test_an_export_loads_into_an_empty_database_with_its_books_intact(source_export):
    header = lines_of(source_export)[0]
    loaded = load(source_export)
    assert loaded == {t["table"]: t["rows"] for t in header["tables"]}
    assert full_check().ok
    acme = Project.objects.get(slug="acme")
    assert acme.wallet.balance == sum(t.signed_amount_for(acme.wallet.id) for t in Transfer.objects.filter(project=acme))
    assert Reservation.objects.filter(status=Reservation.Status.PENDING).count() == 1
    assert CheckoutSession.objects.get().status == CheckoutSession.Status.FUNDED
    assert StripeEvent.objects.get().payload["note"] == "naïve ✓"
    staff = get_user_model().objects.get(username="staff")
    assert staff.has_perm("wallets.suspend_project") and staff.has_perm("wallets.view_transfer")
    assert staff.check_password("pw-for-tests-1")
    # New rows get ids past the imported ones (PostgreSQL's sequences were moved on).
    project = services.project_create(slug="after-the-move", name="After")
    assert project.id > acme.id and project.wallet.id > acme.wallet.id


def test_what_was_imported_exports_as_the_same_rows(source_export):
    load(source_export)
    out = io.StringIO()
    ledger_export(out=out)
    assert out.getvalue().splitlines()[1:] == source_export.splitlines()[1:]
    assert lines_of(out.getvalue())[0]["tables"] == lines_of(source_export)[0]["tables"]


def test_an_edited_amount_is_refused_and_nothing_is_written(source_export):
    lines = lines_of(source_export)
    transfer = next(line for line in lines[1:] if line["table"] == "wallets_transfer")
    transfer["row"]["amount"] += 1
    with pytest.raises(LedgerImportRefused, match="wallets_transfer: its rows do not match the header's sha256"):
        load(text_of(lines))
    assert_still_empty()


def test_books_that_fail_the_ledger_check_are_refused_even_with_matching_checksums(source_export):
    lines = lines_of(source_export)
    wallet = next(line for line in lines[1:] if line["table"] == "wallets_account" and line["row"]["kind"] == "wallet")
    wallet["row"]["balance"] += 1
    rows = [canonical(line["row"]) + "\n" for line in lines[1:] if line["table"] == "wallets_account"]
    entry = next(t for t in lines[0]["tables"] if t["table"] == "wallets_account")
    entry["sha256"] = hashlib.sha256("".join(rows).encode()).hexdigest()
    with pytest.raises(LedgerImportRefused, match="fail the ledger check.*cached balance"):
        load(text_of(lines))
    assert_still_empty()


@pytest.mark.parametrize("cut", ["last_line", "mid_line", "header_only"])
def test_a_truncated_file_is_refused(source_export, cut):
    text = {
        "last_line": "".join(source_export.splitlines(keepends=True)[:-1]),
        "mid_line": source_export[: len(source_export) - 40],
        "header_only": source_export.splitlines(keepends=True)[0],
    }[cut]
    with pytest.raises(LedgerImportRefused, match="truncated"):
        load(text)
    assert_still_empty()


def test_a_row_nested_deeper_than_the_decoder_goes_is_refused(source_export):
    header = source_export.splitlines(keepends=True)[0]
    with pytest.raises(LedgerImportRefused, match="line 2 is not JSON"):
        load(header + "[" * 100_000 + "\n")
    assert_still_empty()


def test_a_newer_format_version_is_refused(source_export):
    lines = lines_of(source_export)
    lines[0]["version"] = FORMAT_VERSION + 1
    with pytest.raises(LedgerImportRefused, match=f"format version {FORMAT_VERSION + 1}, newer"):
        load(text_of(lines))
    assert_still_empty()


@pytest.mark.parametrize("text", ["", "id,amount\n1,2\n", '{"format": "something-else", "version": 1}\n', "\x00\x01",
                                  "[" * 100_000 + "\n"])  # nested deeper than the decoder goes
def test_a_file_that_is_not_an_export_is_refused(text):
    with pytest.raises(LedgerImportRefused, match="not a creditservice ledger export"):
        load(text)
    assert_still_empty()


def test_a_file_of_another_schema_is_refused(source_export):
    lines = lines_of(source_export)
    entry = next(t for t in lines[0]["tables"] if t["table"] == "wallets_apikey")
    entry["columns"].append("rate_limit_per_minute")
    with pytest.raises(LedgerImportRefused, match="wallets_apikey: the export's columns .* differ"):
        load(text_of(lines))
    assert_still_empty()


def test_a_database_that_is_not_empty_is_refused(source_export):
    project = services.project_create(slug="already-here", name="Already here")
    with pytest.raises(LedgerImportRefused, match="target database is not empty: wallets_project has rows"):
        load(source_export)
    assert list(Project.objects.all()) == [project]
    assert not Transfer.objects.exists()


def test_the_command_refuses_in_one_line(source_export, tmp_path):
    path = tmp_path / "edited.jsonl"
    path.write_text(source_export.replace('"version":1', '"version":99', 1))
    with pytest.raises(CommandError) as refused:
        call_command("import_ledger", str(path))
    assert str(refused.value).startswith("import refused: the export is format version 99")
    assert "\n" not in str(refused.value)
    assert_still_empty()


def test_the_commands_move_a_file_through(source_export, tmp_path, capsys):
    path = tmp_path / "ledger.jsonl"
    path.write_text(source_export)
    call_command("import_ledger", str(path))
    assert "checksums, counts and the ledger check passed" in capsys.readouterr().out
    again = tmp_path / "again.jsonl"
    call_command("export_ledger", str(again))
    assert again.read_text().splitlines()[1:] == source_export.splitlines()[1:]
    assert not (tmp_path / "again.jsonl.partial").exists()
