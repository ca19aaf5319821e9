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
    # An owner ticked "save this card for automatic top-ups": once paid, the card becomes the project's.
    save_card = models.BooleanField(default=False)
    card_saved_at = models.DateTimeField(null=True, blank=True, help_text="When its card became the auto top-up card.")
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


class AutoTopUp(models.Model):
    """A project's automatic top-up: when available falls below `threshold`, one off-session card charge
    fills the wallet up to `target`, at most `monthly_cap` of automatic charges per calendar month (UTC).

    Amounts are micro-credits. It can only be on with a saved card and the tenant's recorded consent.
    """

    project = models.OneToOneField(Project, on_delete=models.PROTECT, related_name="auto_top_up")
    enabled = models.BooleanField(default=False)
    threshold = models.BigIntegerField(help_text="Charge when available falls below this, in micro-credits.")
    target = models.BigIntegerField(help_text="One charge fills available up to this, in micro-credits.")
    monthly_cap = models.BigIntegerField(help_text="Automatic charges per calendar month (UTC), in micro-credits.")
    stripe_customer_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    stripe_payment_method_id = models.CharField(max_length=255, blank=True, help_text="The card saved for off-session charges.")
    card_saved_at = models.DateTimeField(null=True, blank=True)
    # The consent to be charged without being present: who gave it, when, and the exact terms shown.
    consent_by = models.CharField(max_length=100, blank=True, help_text="user:<id>")
    consent_at = models.DateTimeField(null=True, blank=True)
    consent_terms_version = models.CharField(max_length=20, blank=True)
    consent_terms_text = models.TextField(blank=True)
    consecutive_failures = models.PositiveIntegerField(default=0)
    disabled_reason = models.CharField(max_length=300, blank=True, help_text="Why it turned itself off, when it did.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "auto top-up"
        constraints = [
            models.CheckConstraint(condition=Q(threshold__gte=0), name="autotopup_threshold_not_negative"),
            models.CheckConstraint(condition=Q(target__gt=F("threshold")), name="autotopup_target_above_threshold"),
            models.CheckConstraint(condition=Q(monthly_cap__gt=0), name="autotopup_cap_positive"),
            models.CheckConstraint(
                condition=Q(enabled=False) | (Q(consent_at__isnull=False) & ~Q(stripe_payment_method_id="")),
                name="autotopup_enabled_has_card_and_consent",
            ),
        ]

    def __str__(self) -> str:
        return f"auto top-up of {self.project_id} ({'on' if self.enabled else 'off'})"


class AutoTopUpCharge(models.Model):
    """One threshold crossing of a project and what it led to: one off-session charge, or a recorded skip.

    The row is written (and committed) before Stripe is called; Stripe's Idempotency-Key is built from it,
    so a retry of the call never charges twice. `crossing` numbers the project's crossings; a crossing is
    closed once the wallet is seen at or above the threshold again, or its charge ended (funded, failed):
    only then may the next fall below the threshold open crossing + 1.
    """

    class Status(models.TextChoices):
        CREATED = "created"  # written; Stripe not told yet, or its call failed and is retried (next_attempt_at)
        PROCESSING = "processing"  # Stripe accepted the PaymentIntent; funded by its payment_intent.succeeded
        SUCCEEDED = "succeeded"  # the wallet received the credits (exactly one ledger transfer)
        FAILED = "failed"  # declined, or Stripe could not be reached after every retry
        SKIPPED = "skipped"  # not charged, see skip_reason (the monthly cap, a charge still in flight)

    IN_FLIGHT = (Status.CREATED, Status.PROCESSING)

    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="auto_top_up_charges")
    crossing = models.PositiveIntegerField(help_text="The project's threshold crossing this row answers, 1, 2, …")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.CREATED)
    available_before = models.BigIntegerField(help_text="Available when the crossing was seen, in micro-credits.")
    amount = models.BigIntegerField(default=0, help_text="Credits charged for, in micro-credits (0 when skipped).")
    currency = models.CharField(max_length=3, blank=True)
    currency_amount = models.BigIntegerField(default=0, help_text="Money charged, in minor units (cents).")
    skip_reason = models.CharField(max_length=300, blank=True)
    stripe_payment_intent_id = models.CharField(max_length=255, unique=True, null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text="Calls to Stripe made for this charge.")
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="When the sweep retries a created charge.")
    error = models.TextField(blank=True)
    transfer = models.OneToOneField(
        Transfer, on_delete=models.PROTECT, null=True, blank=True, related_name="+",
        help_text="The ledger transfer stripe → wallet that funded this charge.",
    )
    refunded_amount = models.BigIntegerField(default=0, help_text="Credits taken back by refunds, in micro-credits.")
    refunded_currency_amount = models.BigIntegerField(default=0, help_text="Money refunded, in minor units.")
    disputed = models.BooleanField(default=False, help_text="The cardholder opened a dispute: staff must look.")
    disputed_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True, help_text="The crossing is over: the next fall is a new one.")
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    funded_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "auto top-up charge"
        constraints = [
            # Concurrent commits that all see the same fall below the threshold create one crossing.
            models.UniqueConstraint(fields=["project", "crossing"], name="autotopup_charge_one_per_crossing"),
            models.UniqueConstraint(fields=["project"], condition=Q(closed_at__isnull=True),
                                    name="autotopup_charge_one_open_crossing"),
            # Never while a previous automatic charge is in flight, backed by the database.
            models.UniqueConstraint(fields=["project"], condition=Q(status__in=["created", "processing"]),
                                    name="autotopup_charge_one_in_flight"),
            models.CheckConstraint(condition=Q(amount__gte=0) & Q(currency_amount__gte=0),
                                   name="autotopup_charge_amounts_not_negative"),
            models.CheckConstraint(condition=~Q(status="succeeded") | Q(transfer__isnull=False),
                                   name="autotopup_charge_succeeded_has_transfer"),
            models.CheckConstraint(condition=Q(refunded_amount__gte=0, refunded_amount__lte=F("amount")),
                                   name="autotopup_charge_refund_within_amount"),
        ]
        indexes = [
            # Serves the sweep: created charges whose retry is due.
            models.Index(fields=["status", "next_attempt_at"], name="autotopup_charge_due"),
            # Serves the monthly cap's sum and the project's list, newest first.
            models.Index(fields=["project", "-created_at"], name="autotopup_charge_recent"),
        ]

    def __str__(self) -> str:
        return f"auto top-up {self.project_id}#{self.crossing} {format_amount(self.amount)} credits ({self.status})"
