from django.core.management.base import BaseCommand, CommandError

from wallets.models import LedgerCheck
from wallets.services import ledger_check_run


class Command(BaseCommand):
    help = ("Verify the ledger: each wallet's cached balance equals its transfers, all accounts sum to zero, "
            "no hold or debit overdrew a wallet, reserved equals the pending holds. The result is stored "
            "(admin: Ledger checks) unless --no-record.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("--no-record", action="store_true", help="Do not store the result as a ledger check.")

    def handle(self, *args, **options) -> None:
        report, row = ledger_check_run(source=LedgerCheck.Source.COMMAND, record=not options["no_record"])
        if not report.ok:
            for drift in report.drifts:
                self.stderr.write(f"DRIFT: {drift}")
            raise CommandError(f"ledger check failed: {len(report.drifts)} drift(s) found")
        self.stdout.write(f"ledger ok: {report.wallets_checked} wallets checked, accounts sum to 0")
