"""Apply stored Stripe events again: the failed ones, and ones whose processing never finished (a crash)."""

from datetime import timedelta

from django.core.management.base import BaseCommand
from django.utils import timezone

from payments.events import stripe_event_reprocess
from payments.models import StripeEvent


class Command(BaseCommand):
    help = "Reprocess failed Stripe events and events stuck in 'received' (safe to run any number of times)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--event", action="append", default=[], help="A Stripe event id (evt_...); repeatable.")
        parser.add_argument("--stuck-after", type=int, default=300,
                            help="Seconds after which a 'received' event counts as interrupted (default 300).")

    def handle(self, *args, event: list[str], stuck_after: int, **options) -> None:
        if event:
            events = StripeEvent.objects.filter(stripe_event_id__in=event)
        else:
            stuck = timezone.now() - timedelta(seconds=stuck_after)
            events = StripeEvent.objects.filter(status=StripeEvent.Status.FAILED) | StripeEvent.objects.filter(
                status=StripeEvent.Status.RECEIVED, received_at__lt=stuck)
        outcomes = stripe_event_reprocess(event_ids=list(events.values_list("id", flat=True)))
        summary = ", ".join(f"{count} {status}" for status, count in sorted(outcomes.items())) or "nothing to do"
        self.stdout.write(f"Reprocessed: {summary}")
