"""Here because portal is the top app (it may see every app); the logic is creditservice/ledger_io."""

import os
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from creditservice.ledger_io.export import ledger_export
from creditservice.ledger_io.progress import terminal_progress


class Command(BaseCommand):
    help = ("Write the whole ledger (projects, members, accounts, transfers, keys, quotas, usage, charges, "
            "billing runs, payments ...) as JSON Lines from one read snapshot, for import_ledger on another "
            "database. FILE '-' writes to stdout. Quiesce writes first (see README).")

    def add_arguments(self, parser) -> None:
        parser.add_argument("file", help="Where to write the export; '-' for stdout.")

    def handle(self, *args, **options) -> None:
        progress = terminal_progress(sys.stderr, "exported")
        if options["file"] == "-":
            header = ledger_export(out=sys.stdout, progress=progress)
            sys.stdout.flush()
        else:
            path = Path(options["file"])
            partial = path.with_name(path.name + ".partial")
            # Written beside the target and renamed at the end: a file at FILE is always a whole export.
            try:
                with open(partial, "x", encoding="utf-8") as out:
                    header = ledger_export(out=out, progress=progress)
            except FileExistsError as error:
                raise CommandError(f"{partial} exists: another export is running, or remove it") from error
            except OSError as error:
                partial.unlink(missing_ok=True)
                raise CommandError(f"cannot write {partial}: {error.strerror}") from error
            except BaseException:
                partial.unlink(missing_ok=True)
                raise
            os.replace(partial, path)
        sys.stderr.write(f"exported {header['total_rows']} rows in {len(header['tables'])} tables "
                         f"from {header['source_backend']}\n")
