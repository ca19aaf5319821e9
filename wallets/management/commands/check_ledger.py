from django.core.management.base import BaseCommand, CommandError

from wallets.selectors import full_check


class Command(BaseCommand):
    help = "Verify the ledger: each wallet's cached balance equals its transfers, and all accounts sum to zero."

    def handle(self, *args, **options) -> None:
        report = full_check()
        if not report.ok:
            for drift in report.drifts:
                self.stderr.write(f"DRIFT: {drift}")
            raise CommandError(f"ledger check failed: {len(report.drifts)} drift(s) found")
        self.stdout.write(f"ledger ok: {report.wallets_checked} wallets checked, accounts sum to 0")
