"""Here because portal is the top app (it may see every app); the logic is creditservice/ledger_io."""

import sys

from django.core.management.base import BaseCommand, CommandError

from creditservice.ledger_io.load import LedgerImportRefused, ledger_import
from creditservice.ledger_io.progress import terminal_progress


class Command(BaseCommand):
    help = ("Load an export_ledger file into an empty, migrated database in one transaction; the checksums, "
            "counts and ledger invariants are verified before it commits. FILE '-' reads stdin.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", help="The export to load; '-' for stdin.")

    def handle(self, *args, **options) -> None:
        progress = terminal_progress(sys.stderr, "imported")
        try:
            if options["file"] == "-":
                loaded = ledger_import(source=sys.stdin, progress=progress)
            else:
                with open(options["file"], encoding="utf-8") as source:
                    loaded = ledger_import(source=source, progress=progress)
        except OSError as error:
            raise CommandError(f"cannot read {options['file']}: {error.strerror}") from error
        except LedgerImportRefused as error:
            raise CommandError(f"import refused: {error}") from error
        self.stdout.write(f"imported {sum(loaded.values())} rows in {len(loaded)} tables; checksums, counts "
                          "and the ledger check passed")
