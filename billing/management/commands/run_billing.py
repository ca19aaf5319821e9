"""python manage.py run_billing [--window-start ISO] [--parallel]: bill one window from the shell."""

from datetime import UTC, datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from billing.services import billing_run_execute
from metering import windows


class Command(BaseCommand):
    help = "Bill one closed window (default: the last closed one). Safe to repeat: nothing is charged twice."

    def add_arguments(self, parser):
        parser.add_argument("--window-start", help="ISO 8601 start of the window, e.g. 2026-11-22T03:00:00Z")
        parser.add_argument("--parallel", action="store_true", help="Also hand chunks to Celery workers.")

    def handle(self, *args, **options):
        if options["window_start"]:
            try:
                window_start = datetime.fromisoformat(options["window_start"].replace("Z", "+00:00"))
            except ValueError:
                raise CommandError("--window-start must be an ISO 8601 date-time")
            if timezone.is_naive(window_start):
                window_start = window_start.replace(tzinfo=UTC)
        else:
            window_start, _ = windows.last_closed_window()

        def progress(chunk):
            self.stdout.write(f"  chunk {chunk.index}: projects {chunk.first_project_id}-{chunk.last_project_id} "
                              f"{chunk.status}, {chunk.charges_created} charges, {len(chunk.failures)} failures")

        self.stdout.write(f"billing window {window_start.isoformat()} …")
        try:
            outcome = billing_run_execute(window_start=window_start, trigger="command", parallel=options["parallel"],
                                          on_chunk=progress)
        except ValueError as exc:
            raise CommandError(str(exc))
        # Losing the claim to another worker is not an error: the window is being billed.
        self.stdout.write(outcome.message)
