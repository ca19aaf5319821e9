"""The billing batch, its charges, the project lifecycle record and outbound webhooks.

Amounts are integer micro-credits (creditservice/lib/money.py); quantities are integer micro-units of
the resource type's billing unit (vm-hours, GiB-hours, GiB), like metering.UsageRecord; rates are
integer pico-credits per billing unit, like metering.Price. Integers: exact on SQLite as on PostgreSQL,
and cheaper for the billing batch to write and sum than numeric.
"""

import secrets

from django.db import models
from django.db.models import Q

from metering.models import Price
from quotas.models import ResourceType
from wallets.models import Project, Transfer


class BillingRun(models.Model):
    """The billing of one window. One row per window: workers claim it by compare-and-set."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        PARTIAL = "partial"  # finished, some projects could not be charged (see failures)
        FAILED = "failed"  # stopped by an error; a re-run resumes it and charges nothing twice

    window_start = models.DateTimeField(unique=True)
    window_end = models.DateTimeField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    # Bumped by each claim: chunks belong to one attempt, so a resumed run never mixes with a dead one.
    attempt = models.PositiveIntegerField(default=0)
    trigger = models.CharField(max_length=100, blank=True, help_text="beat, command, admin:<user>, ...")
    # Late usage of earlier windows is looked for among records written since this moment.
    late_usage_since = models.DateTimeField(null=True, blank=True)
    projects_charged = models.PositiveIntegerField(default=0)
    charges_created = models.PositiveIntegerField(default=0)
    credits_charged = models.BigIntegerField(default=0)  # micro-credits
    failures = models.JSONField(default=list, blank=True, help_text="[{project_id, resource_type_id, window_start, reason}]")
    error = models.TextField(blank=True, help_text="Why the run stopped, when it failed.")
    started_at = models.DateTimeField(null=True, blank=True)
    # Moved by every finished chunk; a running run whose heartbeat is older than the lease is taken over.
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-window_start"]
        constraints = [
            models.CheckConstraint(condition=Q(window_end__gt=models.F("window_start")), name="billing_run_window_forward"),
        ]

    def __str__(self) -> str:
        return f"billing {self.window_start:%Y-%m-%d %H:%M} {self.status}"

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None


class BillingChunk(models.Model):
    """A range of project ids of one run attempt, claimed by one worker at a time (compare-and-set)."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"

    run = models.ForeignKey(BillingRun, on_delete=models.CASCADE, related_name="chunks")
    attempt = models.PositiveIntegerField()
    index = models.PositiveIntegerField()
    first_project_id = models.BigIntegerField()
    last_project_id = models.BigIntegerField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    claimed_at = models.DateTimeField(null=True, blank=True)
    # host:pid of the process that took it, so staff can tell which worker ran (or stalled on) a chunk.
    worker = models.CharField(max_length=100, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    projects_charged = models.PositiveIntegerField(default=0)
    charges_created = models.PositiveIntegerField(default=0)
    credits_charged = models.BigIntegerField(default=0)  # micro-credits
    failures = models.JSONField(default=list, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["run", "attempt", "index"]
        constraints = [
            models.UniqueConstraint(fields=["run", "attempt", "index"], name="billing_chunk_unique_index"),
        ]

    def __str__(self) -> str:
        return f"chunk {self.index} of {self.run_id}/{self.attempt} ({self.status})"


class OwedCharge(models.Model):
    """Billing a run still owes: a project (or a failed chunk's range of projects) it could not charge.

    Nothing a run failed to charge is dropped: the following billing beats retry each owed row, with
    back-off, through the same set-based path as the run (charging.charge_chunk over the row's projects
    and the run's scope), until it is charged; a run stays `partial` while one of its rows is owed.
    Exactly once rests on the charges' deterministic keys, so a retry that races a re-run is harmless.
    """

    class Status(models.TextChoices):
        OWED = "owed"  # retried by the billing beat from next_retry_at on
        CHARGED = "charged"  # nothing of it is owed any more
        SPLIT = "split"  # a chunk whose retry charged all but a few projects; those are owed one by one

    run = models.ForeignKey(BillingRun, on_delete=models.PROTECT, related_name="owed_charges")
    # The projects owed: one project (first == last, and `project` is set) or a chunk's id range.
    first_project_id = models.BigIntegerField()
    last_project_id = models.BigIntegerField()
    project = models.ForeignKey(Project, on_delete=models.PROTECT, null=True, blank=True, related_name="owed_charges")
    # The run attempt's scope when it failed (earlier windows' usage written since then); a later
    # attempt of the run only settles this row if its own scope is at least as wide.
    late_usage_since = models.DateTimeField(null=True, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.OWED)
    # Failed attempts so far (the run's and the retries'); the back-off doubles with each.
    attempts = models.PositiveIntegerField(default=0)
    next_retry_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    failures = models.JSONField(default=list, blank=True,
                                help_text="Of the last attempt: [{project_id, resource_type_id, window_start, reason}]")
    # What retries of this row charged (the run's totals add them to its chunks').
    charges_created = models.PositiveIntegerField(default=0)
    credits_charged = models.BigIntegerField(default=0)  # micro-credits
    created_at = models.DateTimeField(auto_now_add=True)
    settled_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("retry_owedcharge", "Can retry owed billing now")]
        constraints = [
            models.UniqueConstraint(fields=["run", "first_project_id", "last_project_id"], name="owed_charge_unique_range"),
            models.CheckConstraint(condition=Q(last_project_id__gte=models.F("first_project_id")),
                                   name="owed_charge_range_forward"),
        ]
        indexes = [
            # Serves the beat's "owed rows whose retry time has come" and "which runs still owe";
            # a run's own rows are found by the unique index (it starts with the run).
            models.Index(fields=["status", "next_retry_at"], name="owed_charge_due"),
        ]

    def __str__(self) -> str:
        projects = (f"project {self.first_project_id}" if self.first_project_id == self.last_project_id
                    else f"projects {self.first_project_id}-{self.last_project_id}")
        return f"{projects} of billing {self.run_id} ({self.status})"


class Charge(models.Model):
    """Usage of one project, resource type and window turned into credits: one ledger transfer.

    A late adjustment charges what a window's usage grew by after it was billed; a reversal gives
    back what it shrank by (a re-collected window can come back lower): its quantity and amount are
    negative and its transfer goes revenue → wallet. Summing a window's charges gives what the
    customer paid for it. Every charge keeps what explains it: the usage records, the quantity and
    unit, the price versions and the rate.
    """

    class Kind(models.TextChoices):
        REGULAR = "regular"
        LATE_ADJUSTMENT = "late_adjustment"
        REVERSAL = "reversal"  # usage came back lower after it was billed: credits given back

    # No single-column indexes on project, type and price: the composite indexes below start with
    # project, and types and prices are never deleted. Every index costs 100,000 entries an hour.
    # No database foreign keys at all (db_constraint=False): every column points at rows that are
    # never deleted — projects with charges (PROTECT, and their ledger rows keep a checked key),
    # shipped types, price history, runs, append-only transfers — and each checked key cost
    # ~0.3 s per 100,000 charges at commit. PROTECT still guards them in the ORM.
    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="charges", db_index=False,
                                db_constraint=False)
    resource_type = models.ForeignKey(ResourceType, on_delete=models.PROTECT, related_name="charges", db_index=False,
                                      db_constraint=False)
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.REGULAR)
    # Micro-units of `unit` (the type's billing unit) charged by this charge; an adjustment's is the
    # growth, a reversal's the (negative) shrinkage.
    quantity = models.BigIntegerField()
    unit = models.CharField(max_length=40)
    # The window's whole usage when charged and what earlier charges of the window had covered (micro-units).
    window_quantity = models.BigIntegerField()
    previously_charged_quantity = models.BigIntegerField(default=0)
    # The price version in force at the window's start; price_breakdown lists every version when a
    # price changed inside the window (one segment each: from, to, price id, unit price, per, rate);
    # empty when one version covered the whole window.
    price = models.ForeignKey(Price, on_delete=models.PROTECT, related_name="charges", db_index=False, db_constraint=False)
    # Pico-credits per unit of `unit`: the price in force, or for a window spanning a price change the
    # segments' rates weighted by time and rounded once to 12 places (money.weighted_rate_picos).
    # amount == money.charge_micros(window_quantity, rate) - what earlier charges took, exactly.
    rate = models.BigIntegerField()
    price_breakdown = models.JSONField(default=list)
    amount = models.BigIntegerField(help_text="Micro-credits; zero when the usage rounds to nothing, negative for a reversal.")
    # The transfer carries the charge's idempotency key, so key lookups find one from the other; no
    # index on this column (it would only serve transfer → charge, which goes by key).
    transfer = models.ForeignKey(Transfer, on_delete=models.PROTECT, null=True, blank=True, related_name="charges",
                                 db_index=False, db_constraint=False)
    run = models.ForeignKey(BillingRun, on_delete=models.PROTECT, related_name="charges", db_constraint=False)
    idempotency_key = models.CharField(max_length=200)
    usage_record_ids = models.JSONField(default=list, help_text="metering.UsageRecord ids summed into window_quantity.")
    created_at = models.DateTimeField()

    class Meta:
        ordering = ["-window_start", "project", "resource_type"]
        constraints = [
            # A constraint, not unique=True: on PostgreSQL that would add a second (LIKE) index per key.
            models.UniqueConstraint(fields=["idempotency_key"], name="charge_idempotency_key_unique"),
            # A reversal gives back (negative quantity and amount); every other kind takes.
            models.CheckConstraint(
                condition=(Q(kind="reversal", quantity__lt=0, amount__lte=0)
                           | (~Q(kind="reversal") & Q(quantity__gt=0, amount__gte=0))),
                name="charge_sign_follows_kind"),
            models.CheckConstraint(condition=Q(amount=0) | Q(transfer__isnull=False), name="charge_amount_has_transfer"),
        ]
        indexes = [
            # Serves "what was already charged for these windows" in each chunk, the charge list and the
            # burn rate. The only index by project: each one costs 100,000 random entries an hour.
            models.Index(fields=["project", "window_start"], name="charge_project_window"),
        ]

    def __str__(self) -> str:
        return self.idempotency_key


class ProjectStatusChange(models.Model):
    """One transition of Project.status (active → grace → suspended → active). Append-only."""

    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="status_changes")
    from_status = models.CharField(max_length=16, choices=Project.Status.choices)
    to_status = models.CharField(max_length=16, choices=Project.Status.choices)
    reason = models.CharField(max_length=300)
    grace_until = models.DateTimeField(null=True, blank=True)
    at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.project_id}: {self.from_status} → {self.to_status}"


def _new_secret() -> str:
    return secrets.token_urlsafe(32)


class WebhookEndpoint(models.Model):
    """Where lifecycle events are sent. No project: every project's events (a platform service)."""

    class Event(models.TextChoices):
        PROJECT_GRACE = "project.grace"
        PROJECT_SUSPENDED = "project.suspended"
        PROJECT_REACTIVATED = "project.reactivated"
        WALLET_THRESHOLD = "wallet.threshold"
        BUDGET_THRESHOLD = "budget.threshold"
        RUNWAY_THRESHOLD = "runway.threshold"

    url = models.URLField(max_length=500)
    secret = models.CharField(max_length=200, default=_new_secret, help_text="Signs every delivery (HMAC-SHA256).")
    project = models.ForeignKey(Project, on_delete=models.CASCADE, null=True, blank=True, related_name="webhook_endpoints")
    enabled = models.BooleanField(default=True)
    event_types = models.JSONField(default=list, blank=True, help_text='e.g. ["project.grace"]; empty: every event.')
    description = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.url} ({self.project or 'all projects'})"

    def wants(self, event_type: str) -> bool:
        return not self.event_types or event_type in self.event_types


class WebhookDelivery(models.Model):
    """One event for one endpoint, with the log of its attempts."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RETRYING = "retrying"
        DELIVERED = "delivered"
        FAILED = "failed"  # gave up after OUTBOUND_WEBHOOK_MAX_ATTEMPTS; staff can redeliver

    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    event_id = models.CharField(max_length=64, help_text="Stable across retries, so receivers can drop duplicates.")
    event_type = models.CharField(max_length=40)
    payload = models.JSONField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    response_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "webhook deliveries"
        indexes = [
            # Serves the sweep for due retries.
            models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_due"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} → {self.endpoint.url} ({self.status})"


class ThresholdAlert(models.Model):
    """A project's alert on one metric: fires once when the value crosses the threshold, and once more
    (recovered) when it goes back. `state` is flipped by a conditional UPDATE, so concurrent evaluations
    of one crossing notify once (billing/services/alerts.py)."""

    class Metric(models.TextChoices):
        AVAILABLE = "available"  # the available balance; threshold in micro-credits; fires below it
        RUNWAY = "runway"  # hours the available balance lasts at the burn rate; threshold in hours; fires below
        BUDGET = "budget"  # spend this month as a percent of the budget's hard limit; fires at or above

    class Level(models.TextChoices):
        INFO = "info"
        WARNING = "warning"
        CRITICAL = "critical"

    class State(models.TextChoices):
        ARMED = "armed"  # the value is on the good side: the next crossing notifies
        FIRED = "fired"  # crossed and notified: nothing more until it recovers

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="threshold_alerts")
    metric = models.CharField(max_length=10, choices=Metric.choices)
    level = models.CharField(max_length=8, choices=Level.choices, default=Level.WARNING)
    # The metric's unit: micro-credits (available), whole hours (runway) or whole percent (budget).
    threshold = models.BigIntegerField()
    state = models.CharField(max_length=5, choices=State.choices, default=State.ARMED)
    # The value when the state last flipped, in the threshold's unit (None before, or a runway without burn).
    last_value = models.BigIntegerField(null=True, blank=True)
    changed_at = models.DateTimeField(null=True, blank=True, help_text="When the state last flipped.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["project_id", "metric", "threshold", "id"]
        constraints = [
            models.UniqueConstraint(fields=["project", "metric", "threshold"], name="threshold_alert_unique"),
            models.CheckConstraint(condition=Q(threshold__gte=0), name="threshold_alert_threshold_not_negative"),
        ]
        # The project FK's index serves the hot-path load: WHERE project_id = %s.

    def __str__(self) -> str:
        return f"{self.metric} {self.threshold} ({self.level}) of {self.project_id}: {self.state}"


class AlertNotification(models.Model):
    """One crossing (or recovery) of an alert: the email outbox. Written with the state flip; the email is
    sent after the commit by a task and, if that was lost, by the alerts sweep (claimed by compare-and-set)."""

    class Change(models.TextChoices):
        CROSSED = "crossed"
        RECOVERED = "recovered"

    alert = models.ForeignKey(ThresholdAlert, on_delete=models.CASCADE, related_name="notifications")
    change = models.CharField(max_length=9, choices=Change.choices)
    value = models.BigIntegerField(null=True, blank=True)  # the threshold's unit
    data = models.JSONField(help_text="The webhook's data: what the email says too.")
    email_claimed_at = models.DateTimeField(null=True, blank=True)
    email_attempts = models.PositiveSmallIntegerField(default=0)
    emailed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # Serves the sweep for emails not sent: WHERE emailed_at IS NULL.
            models.Index(fields=["emailed_at", "created_at"], name="alert_notification_unsent"),
        ]

    def __str__(self) -> str:
        return f"{self.alert} {self.change}"
