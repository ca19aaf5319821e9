"""Card top-ups through Stripe Checkout and the Stripe events that fund them.

Credits are integer micro-credits (creditservice/lib/money.py); money charged by card is integer minor
units of `currency` (cents for usd), as Stripe keeps it. Wallets are only ever changed through
wallets.ledger.transfer.
"""

from django.db import models
from django.db.models import F, Q

from creditservice.lib.money import format_amount
from wallets.models import Project, Transfer


class CheckoutSession(models.Model):
    """One top-up: our row is written before Stripe is called (write-ahead), then carries Stripe's session."""

    class Status(models.TextChoices):
        PENDING = "pending"  # saved, Stripe not answered yet (a retry with the same key resumes it)
        OPEN = "open"  # a Stripe Checkout Session exists; the customer has not paid
        PROCESSING = "processing"  # completed with a delayed payment method; waiting for the money
        FUNDED = "funded"  # the wallet received the credits (exactly one ledger transfer)
        FAILED = "failed"  # the delayed payment failed; nothing funded
        EXPIRED = "expired"  # the customer never paid
        REFUNDED = "refunded"  # fully refunded: all credits taken back

    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="checkout_sessions")
    # Null until Stripe has answered; unique so one Stripe session funds one row.
    stripe_session_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    # Known once the session is paid; refunds and disputes name the payment intent, not the session.
    stripe_payment_intent_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    # The caller's key for this top-up (API Idempotency-Key claim, portal form token): one row per key.
    idempotency_key = models.CharField(max_length=200, unique=True)
    amount = models.BigIntegerField(help_text="Credits bought, in micro-credits.")
    currency = models.CharField(max_length=3)
    currency_amount = models.BigIntegerField(help_text="Money charged, in minor units of the currency (cents).")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    url = models.CharField(max_length=2000, blank=True, help_text="Stripe's hosted payment page.")
    # Kept so a retried call sends Stripe exactly the same parameters under the same idempotency key.
    success_url = models.CharField(max_length=2000)
    cancel_url = models.CharField(max_length=2000)
    transfer = models.OneToOneField(
        Transfer, on_delete=models.PROTECT, null=True, blank=True, related_name="+",
        help_text="The ledger transfer stripe → wallet that funded this top-up.",
    )
    refunded_amount = models.BigIntegerField(default=0, help_text="Credits taken back by refunds, in micro-credits.")
    refunded_currency_amount = models.BigIntegerField(default=0, help_text="Money refunded, in minor units.")
    disputed = models.BooleanField(default=False, help_text="The cardholder opened a dispute: staff must look.")
    disputed_at = models.DateTimeField(null=True, blank=True)
    created_by = models.CharField(max_length=100, help_text="user:<id>, api_key:<id> or system")
    error = models.TextField(blank=True, help_text="Why Stripe could not be reached, when it could not.")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    funded_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0), name="checkout_amount_positive"),
            models.CheckConstraint(condition=Q(currency_amount__gt=0), name="checkout_currency_amount_positive"),
            models.CheckConstraint(
                condition=Q(refunded_amount__gte=0, refunded_amount__lte=F("amount")),
                name="checkout_refund_within_amount",
            ),
            models.CheckConstraint(
                condition=~Q(status="funded") | Q(transfer__isnull=False), name="checkout_funded_has_transfer",
            ),
        ]
        indexes = [
            # Serves the project's list of top-ups, newest first (portal and admin).
            models.Index(fields=["project", "-id"], name="checkout_project_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.stripe_session_id or f'#{self.pk}'} {format_amount(self.amount)} credits ({self.status})"

    @property
    def funded(self) -> bool:
        return self.transfer_id is not None


class StripeEvent(models.Model):
    """Every verified webhook event, stored under Stripe's id before it is acted on."""

    class Status(models.TextChoices):
        RECEIVED = "received"  # stored, not yet processed (or processing crashed)
        PROCESSED = "processed"
        IGNORED = "ignored"  # a type we do not act on, or a session that is not ours
        FAILED = "failed"  # could not be applied; see error, fix the cause, reprocess from the admin

    stripe_event_id = models.CharField(max_length=255, unique=True)
    type = models.CharField(max_length=100, db_index=True)
    livemode = models.BooleanField(default=False)
    payload = models.JSONField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RECEIVED, db_index=True)
    error = models.TextField(blank=True)
    attempts = models.PositiveIntegerField(default=0)
    received_at = models.DateTimeField(auto_now_add=True, db_index=True)
    processed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "Stripe event"

    def __str__(self) -> str:
        return f"{self.stripe_event_id} {self.type} ({self.status})"

    @property
    def data_object(self) -> dict:
        return (self.payload.get("data") or {}).get("object") or {}
