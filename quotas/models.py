"""Admission control: resource types, quotas, reservations and budgets."""

from django.db import models

from creditservice.lib.money import MAX_AMOUNT_MICROS

from .quantities import MAX_QUANTITY_MICROS, format_quantity


class ResourceType(models.Model):
    """A kind of resource the platform creates and bills: a VM, a GiB of storage, a GiB of egress, ..."""

    class Metering(models.TextChoices):
        # Billed for time held: usage is measured in unit-hours (a VM for 3 h = 3 vm-hours).
        DURATION = "duration", "unit-hours (held over time)"
        # Billed per unit consumed: usage is a count (10 GiB of egress = 10).
        COUNT = "count", "units (consumed)"

    code = models.SlugField(max_length=50, unique=True)
    display_name = models.CharField(max_length=100)
    unit = models.CharField(max_length=30, help_text="The unit of one quantity: vm, vCPU, GiB, ...")
    metering = models.CharField(max_length=10, choices=Metering.choices, default=Metering.DURATION)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code

    @property
    def billing_unit(self) -> str:
        """What a usage quantity of this type counts: 'vm-hours', 'GiB-hours' or 'GiB'."""
        return f"{self.unit}-hours" if self.metering == self.Metering.DURATION else self.unit


class QuotaDefault(models.Model):
    """A limit staff set for every project that has no quota row of its own for this type yet.

    It is copied into the project's quota row the first time the project reserves the type, so a
    later change of the default does not move existing projects' limits (staff edit those directly).
    """

    resource_type = models.OneToOneField(ResourceType, on_delete=models.CASCADE, related_name="default_quota")
    # Micro-units of the type's unit (creditservice/lib/money.py: 1 unit = 1,000,000).
    limit = models.BigIntegerField()

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(limit__gte=0), name="quota_default_limit_not_negative"),
            models.CheckConstraint(condition=models.Q(limit__lte=MAX_QUANTITY_MICROS), name="quota_default_limit_within_bound"),
        ]

    def __str__(self) -> str:
        return f"default {self.resource_type}: {format_quantity(self.limit)}"


class Quota(models.Model):
    """How much of one resource type a project holds (used), is about to hold (reserved) and may hold (limit).

    A row with limit NULL tracks usage without a limit; no row at all also means no limit. Quantities
    are integer micro-units of the resource type's unit (1 vm = 1,000,000), exact on every backend:
    SQLite would keep a decimal column as a float, and 0.3 + 0.6 - 0.3 would no longer be 0.6. Only
    quotas/services writes used and reserved, by conditional UPDATEs (used + reserved + requested <=
    limit) under the project's wallet row lock.
    """

    project = models.ForeignKey("wallets.Project", on_delete=models.CASCADE, related_name="quotas")
    resource_type = models.ForeignKey(ResourceType, on_delete=models.PROTECT, related_name="quotas")
    limit = models.BigIntegerField(null=True, blank=True, help_text="Empty: no limit (usage is still tracked).")
    used = models.BigIntegerField(default=0)
    reserved = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "resource_type"], name="quota_project_type_unique"),
            models.CheckConstraint(condition=models.Q(used__gte=0), name="quota_used_not_negative"),
            models.CheckConstraint(condition=models.Q(reserved__gte=0), name="quota_reserved_not_negative"),
            models.CheckConstraint(condition=models.Q(limit__gte=0) | models.Q(limit__isnull=True),
                                   name="quota_limit_not_negative"),
            # The bounds quotas/services holds, held by the database too (a raw UPDATE cannot leave
            # them): a reservation is admitted only while used + reserved + quantity stays within one
            # quantity's bound, and a commit or release only moves or drops what is reserved.
            models.CheckConstraint(condition=models.Q(limit__lte=MAX_QUANTITY_MICROS) | models.Q(limit__isnull=True),
                                   name="quota_limit_within_bound"),
            models.CheckConstraint(condition=models.Q(used__lte=MAX_QUANTITY_MICROS, reserved__lte=MAX_QUANTITY_MICROS),
                                   name="quota_used_and_reserved_within_bound"),
            models.CheckConstraint(condition=models.Q(used__lte=MAX_QUANTITY_MICROS - models.F("reserved")),
                                   name="quota_used_plus_reserved_within_bound"),
        ]
        ordering = ["project_id", "resource_type__code"]

    def __str__(self) -> str:
        limit = format_quantity(self.limit) if self.limit is not None else "no limit"
        return f"{self.project_id}/{self.resource_type_id}: {format_quantity(self.used)}+{format_quantity(self.reserved)} of {limit}"


class Reservation(models.Model):
    """A two-phase hold: credits held on the wallet and a quantity held on the quota until commit,
    release or expiry. The Idempotency-Key of the request that created it lives here, under a unique
    index, so claiming the key and creating the hold are one INSERT."""

    class Status(models.TextChoices):
        PENDING = "pending"
        COMMITTED = "committed"
        RELEASED = "released"
        EXPIRED = "expired"

    project = models.ForeignKey("wallets.Project", on_delete=models.PROTECT, related_name="reservations")
    resource_type = models.ForeignKey(ResourceType, on_delete=models.PROTECT, related_name="reservations")
    # Micro-units held on the quota while pending.
    quantity = models.BigIntegerField()
    # Micro-credits held on the wallet while pending.
    amount = models.BigIntegerField()
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    expires_at = models.DateTimeField()
    # Micro-credits moved to revenue by the commit (<= amount); NULL until committed.
    committed_amount = models.BigIntegerField(null=True, blank=True)
    idempotency_scope = models.CharField(max_length=64, help_text="api_key:<id> or user:<id>")
    idempotency_key = models.CharField(max_length=255)
    request_fingerprint = models.CharField(max_length=64, help_text="SHA-256 of the creating request's body.")
    actor = models.CharField(max_length=100, blank=True)
    created_at = models.DateTimeField()
    # When it left pending (committed, released or expired).
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["idempotency_scope", "idempotency_key"], name="reservation_idempotency_unique"),
            models.CheckConstraint(condition=models.Q(amount__gte=0), name="reservation_amount_not_negative"),
            models.CheckConstraint(condition=models.Q(quantity__gt=0), name="reservation_quantity_positive"),
            models.CheckConstraint(condition=models.Q(amount__lte=MAX_AMOUNT_MICROS, quantity__lte=MAX_QUANTITY_MICROS),
                                   name="reservation_amount_and_quantity_within_bounds"),
            models.CheckConstraint(
                condition=(models.Q(status="committed", committed_amount__gte=0, committed_amount__lte=models.F("amount")))
                | (~models.Q(status="committed") & models.Q(committed_amount__isnull=True)),
                name="reservation_committed_amount_shape",
            ),
        ]
        indexes = [
            # Serves GET /projects/{slug}/reservations (newest first).
            models.Index(fields=["project", "-id"], name="reservation_project_recent"),
            # Serves the expiry task and the budget's sum of pending holds of one project.
            models.Index(fields=["project", "expires_at"], name="reservation_pending_project",
                         condition=models.Q(status="pending")),
            models.Index(fields=["expires_at"], name="reservation_pending_expiry", condition=models.Q(status="pending")),
        ]

    def __str__(self) -> str:
        return f"reservation {self.id} ({self.status})"


class Budget(models.Model):
    """A monthly spend limit of a project. The period is the calendar month in UTC; spend is the credits
    committed (reservations) or charged (usage) in it plus the credits pending reservations hold."""

    project = models.OneToOneField("wallets.Project", on_delete=models.CASCADE, related_name="budget")
    # Micro-credits. Reservations that would take spend above it are refused (402 budget_exceeded).
    hard_limit = models.BigIntegerField()
    # Micro-credits. The alert threshold shown to the project; nothing is refused at it.
    soft_limit = models.BigIntegerField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(hard_limit__gte=0), name="budget_hard_limit_not_negative"),
            models.CheckConstraint(condition=models.Q(hard_limit__lte=MAX_AMOUNT_MICROS), name="budget_hard_limit_within_bound"),
            models.CheckConstraint(
                condition=models.Q(soft_limit__isnull=True)
                | (models.Q(soft_limit__gte=0) & models.Q(soft_limit__lte=models.F("hard_limit"))),
                name="budget_soft_limit_within_hard",
            ),
        ]

    def __str__(self) -> str:
        return f"budget of {self.project_id}"
