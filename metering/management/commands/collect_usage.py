"""python manage.py collect_usage [--window-start ISO] [--resource-type CODE]"""

from datetime import datetime

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from metering import collector
from metering.windows import window_start_of


class Command(BaseCommand):
    help = ("Collect usage from the metrics store (PROMETHEUS_URL). Without --window-start: every closed "
            "window of the look-back not collected yet. With it: that window again, whatever its status.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--window-start", help="ISO 8601 start of a window, e.g. 2026-11-22T03:00:00Z")
        parser.add_argument("--resource-type", help="Only this resource type's query (with --window-start)")

    def handle(self, *args, window_start: str | None = None, resource_type: str | None = None, **options) -> None:
        if not settings.PROMETHEUS_URL:
            raise CommandError("PROMETHEUS_URL is not set: there is no metrics store to collect from")

        def progress(outcome: collector.WindowOutcome) -> None:
            state = "collected" if outcome.collected else "FAILED"
            line = (f"{outcome.window_start.isoformat()} {outcome.resource_type}: {state}, "
                    f"{outcome.records_stored} records, {outcome.series_refused} series refused")
            self.stdout.write(line + (f" ({outcome.error})" if outcome.error else ""))

        if window_start:
            try:
                start = datetime.fromisoformat(window_start)
            except ValueError:
                raise CommandError(f"--window-start {window_start!r} is not an ISO 8601 date-time")
            if start.tzinfo is None:
                raise CommandError("--window-start needs a time zone, e.g. 2026-11-22T03:00:00Z")
            if window_start_of(start) != start:
                raise CommandError(f"{start.isoformat()} is not the start of a window "
                                   f"(windows are {settings.BILLING_WINDOW_MINUTES} min, aligned to UTC)")
            summary = collector.collect_one_window(window_start=start, resource_type_code=resource_type,
                                                   on_window=progress)
        else:
            if resource_type:
                raise CommandError("--resource-type goes with --window-start")
            summary = collector.collect_due_windows(on_window=progress)

        self.stdout.write(
            f"Summary: {len(summary.outcomes)} windows tried, {summary.collected} collected, {summary.failed} failed, "
            f"{summary.records_stored} records stored, {summary.series_refused} series refused."
        )
        if summary.deferred:
            self.stdout.write(f"{summary.deferred} failed windows wait for their retry time (see the admin).")
        if summary.gaps_beyond_lookback:
            self.stdout.write(self.style.WARNING(
                f"{summary.gaps_beyond_lookback} windows older than the look-back are not collected."))
        if summary.stopped_early:
            self.stdout.write(self.style.ERROR(f"Stopped early: {summary.stopped_early}"))
        if summary.failed:
            raise CommandError(f"{summary.failed} windows failed; they will be retried by the next run")
