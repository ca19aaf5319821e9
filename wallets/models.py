"""Projects, their wallet accounts and the append-only double-entry ledger.

Every amount is an integer of micro-credits (1 credit = 1,000,000); see creditservice/lib/money.py.
Only wallets/ledger.py writes balances or transfers.
"""

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator
from django.db import models
from django.db.models import F, Q

from creditservice.lib.money import MAX_AMOUNT_MICROS, MAX_BALANCE_MICROS, MIN_BALANCE_MICROS, format_amount
from creditservice.lib.rates import RateFormatError, validate_override


class Project(models.Model):
    class Status(models.TextChoices):
        ACTIVE = "active"
        GRACE = "grace"
        SUSPENDED = "suspended"
        CLOSED = "closed"

    slug = models.SlugField(max_length=63, unique=True)
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    # Set while the project is in grace: when it passes unfunded, the project is suspended.
    grace_until = models.DateTimeField(null=True, blank=True)
    # Per-project overrides of settings.GRACE_PERIOD_HOURS and settings.MIN_RUNTIME_HOURS.
    # Bounded: grace_until = now + hours must stay a datetime, and the hold hours × hourly_cost a bigint.
    grace_period_hours = models.PositiveIntegerField(null=True, blank=True, validators=[MaxValueValidator(24 * 366)],
                                                     help_text="At most 8784 (a year).")
    min_runtime_hours = models.PositiveIntegerField(null=True, blank=True, validators=[MaxValueValidator(24 * 366)],
                                                    help_text="At most 8784 (a year).")
    # A suspension by staff, for a reason other than money (abuse, a contract, ...): funding does not
    # lift it, only staff do (admin "lift suspension"). Written only by billing's lifecycle, which
    # records each change as a ProjectStatusChange with its webhook.
    suspended_by_staff = models.BooleanField(default=False)
    suspension_reason = models.CharField(max_length=200, blank=True, help_text="Why staff suspended it; shown to its members.")
    members = models.ManyToManyField(settings.AUTH_USER_MODEL, through="Membership", related_name="projects")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["slug"]
        permissions = [("suspend_project", "Can suspend a project and lift its suspension")]
        constraints = [
            # A staff suspension is a suspended project with its reason; none leaves no reason behind.
            models.CheckConstraint(
                condition=Q(suspended_by_staff=False, suspension_reason="")
                | (Q(suspended_by_staff=True, status="suspended") & ~Q(suspension_reason="")),
                name="project_staff_suspension_shape",
            ),
        ]

    def __str__(self) -> str:
        return self.slug

    @property
    def admits_new_resources(self) -> bool:
        return self.status == self.Status.ACTIVE


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner"
        MEMBER = "member"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=8, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["project", "user"], name="membership_unique")]

    def __str__(self) -> str:
        return f"{self.user} in {self.project} ({self.role})"


class Account(models.Model):
    """A ledger account: one wallet per project, or a system account shared by all projects.

    Only wallets cache a balance. A system account (revenue, stripe, ...) takes part in every
    project's transfers, so caching its balance would serialize all projects behind one row lock;
    its balance is derived from its transfers instead (see selectors.system_account_balance).
    """

    class Kind(models.TextChoices):
        WALLET = "wallet"
        SYSTEM = "system"

    class System(models.TextChoices):
        STRIPE = "stripe"
        REVENUE = "revenue"
        PROMOTIONS = "promotions"
        ADJUSTMENTS = "adjustments"
        EXPIRED = "expired"  # the unspent rest of grants past their expires_at (kind grant_expiry)
        VOIDED = "voided"  # the unspent rest of grants staff voided (kind grant_void)

    kind = models.CharField(max_length=8, choices=Kind.choices)
    code = models.CharField(max_length=32, unique=True, null=True, blank=True, help_text="System accounts only.")
    project = models.OneToOneField(Project, on_delete=models.PROTECT, null=True, blank=True, related_name="wallet")
    # Micro-credits. Cached sum of this wallet's transfers, written only by wallets/ledger.py.
    balance = models.BigIntegerField(default=0)
    # Micro-credits held by pending reservations; available = balance - reserved.
    reserved = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(reserved__gte=0), name="account_reserved_not_negative"),
            # The ledger's bounds, held by the database too, so that no write outside wallets/ledger
            # (a raw UPDATE, a data migration) can leave them: a hold is taken only while available
            # covers it, so reserved never exceeds a balance; see money.MAX_BALANCE_MICROS for the floor.
            models.CheckConstraint(condition=Q(reserved__lte=MAX_BALANCE_MICROS), name="account_reserved_within_bound"),
            models.CheckConstraint(condition=Q(balance__gte=MIN_BALANCE_MICROS, balance__lte=MAX_BALANCE_MICROS),
                                   name="account_balance_within_bounds"),
            models.CheckConstraint(
                condition=(Q(kind="wallet", project__isnull=False, code__isnull=True))
                | (Q(kind="system", project__isnull=True, code__isnull=False, balance=0, reserved=0)),
                name="account_kind_shape",
            ),
        ]

    def __str__(self) -> str:
        return f"wallet:{self.project_id}" if self.kind == self.Kind.WALLET else f"system:{self.code}"

    @property
    def available(self) -> int:
        return self.balance - self.reserved

    @property
    def balance_display(self) -> str:
        return format_amount(self.balance)


class Transfer(models.Model):
    """One movement of credits: debit_account loses `amount`, credit_account gains it. Append-only.

    The database refuses any UPDATE or DELETE of a transfer (triggers, migration 0008). On SQLite a
    migration that rebuilds this table (most AlterField or AddConstraint operations do) drops those
    triggers with the old table: such a migration must install them again (wallets/append_only.py), and
    wallets/tests/test_guards_transfers_append_only.py fails if it does not.
    """

    class Kind(models.TextChoices):
        CREDIT = "credit"  # staff or platform credit from adjustments
        DEBIT = "debit"  # staff or platform debit to adjustments
        TOP_UP = "top_up"  # card payment through Stripe
        REFUND = "refund"  # a card payment given back: credits taken back
        PROMOTION = "promotion"
        USAGE = "usage"  # billing run charge for metered usage
        RESERVATION = "reservation"  # committed admission reservation
        REVERSAL = "reversal"  # correction of an earlier transfer
        GRANT_EXPIRY = "grant_expiry"  # a grant's unspent rest at its expires_at: wallet → expired
        GRANT_VOID = "grant_void"  # a grant's unspent rest voided by staff: wallet → voided

    # No single-column index on project: both composite indexes below start with it, and every index
    # is one more entry per transfer (a billing run writes 100,000 an hour).
    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="transfers", db_index=False)
    debit_account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="debits")
    credit_account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="credits")
    amount = models.BigIntegerField()  # micro-credits, > 0
    kind = models.CharField(max_length=16, choices=Kind.choices)
    reason = models.CharField(max_length=500, blank=True)
    reference = models.CharField(max_length=200, blank=True, help_text="What caused it: reservation, checkout session, ...")
    idempotency_key = models.CharField(max_length=200)  # unique: see Meta
    metadata = models.JSONField(default=dict, blank=True)
    actor = models.CharField(max_length=100, blank=True, help_text="user:<id>, api_key:<id> or system")
    # The project wallet's balance right after this transfer (micro-credits), for statements.
    wallet_balance_after = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        constraints = [
            # A constraint, not unique=True: on PostgreSQL that adds a second (LIKE) index nothing uses.
            models.UniqueConstraint(fields=["idempotency_key"], name="transfer_idempotency_key_unique"),
            models.CheckConstraint(condition=Q(amount__gt=0), name="transfer_amount_positive"),
            models.CheckConstraint(condition=Q(amount__lte=MAX_AMOUNT_MICROS), name="transfer_amount_within_bound"),
            models.CheckConstraint(condition=~Q(debit_account=F("credit_account")), name="transfer_distinct_accounts"),
        ]
        indexes = [
            # Serves the wallet statement: one project's transfers, newest first, cursor on id.
            models.Index(fields=["project", "-id"], name="transfer_project_recent"),
            models.Index(fields=["project", "kind", "-id"], name="transfer_project_kind"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {format_amount(self.amount)} ({self.idempotency_key})"

    def signed_amount_for(self, account_id: int) -> int:
        return self.amount if self.credit_account_id == account_id else -self.amount


def validate_rate_limit(value: str) -> None:
    """An API key's own rate limit: a rate (1200/minute), "unlimited", or blank for the default."""
    try:
        validate_override(value)
    except RateFormatError as exc:
        raise ValidationError(f"{exc}, or \"unlimited\", or blank for the service default") from None


class ApiKey(models.Model):
    """A service credential. Only a SHA-256 of the key is stored; the key is shown once."""

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, help_text="The first characters, to recognise a key in logs.")
    key_hash = models.CharField(max_length=64, unique=True, editable=False)
    project = models.ForeignKey(
        Project, on_delete=models.CASCADE, null=True, blank=True, related_name="api_keys",
        help_text="Empty: a platform-wide key. Set: the key sees this project only.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Who revoked it ("user:<id>"), beside when: a key is never deleted, since transfers name it as their actor.
    revoked_by = models.CharField(max_length=100, blank=True, default="")
    rate_limit = models.CharField(
        max_length=32, blank=True, default="", validators=[validate_rate_limit],
        help_text="Requests this key may make, e.g. 1200/minute (per second, minute, hour or day); "
                  "\"unlimited\" for no limit; blank: the service default (API_RATE_LIMIT).",
    )

    class Meta:
        verbose_name = "API key"

    def __str__(self) -> str:
        scope = self.project.slug if self.project_id else "platform"
        return f"{self.name} ({self.prefix}…, {scope})"

    @property
    def is_platform(self) -> bool:
        return self.project_id is None


class IdempotencyRecord(models.Model):
    """An Idempotency-Key claimed by one client, with the answer given to its first request."""

    class Status(models.TextChoices):
        IN_PROGRESS = "in_progress"
        COMPLETED = "completed"

    scope = models.CharField(max_length=64, help_text="api_key:<id> or user:<id>")
    key = models.CharField(max_length=255)
    fingerprint = models.CharField(max_length=64, help_text="SHA-256 of method, path and body.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.IN_PROGRESS)
    response_status = models.PositiveSmallIntegerField(null=True, blank=True)
    response_body = models.JSONField(null=True, blank=True)
    locked_at = models.DateTimeField()
    created_at = models.DateTimeField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["scope", "key"], name="idempotency_scope_key_unique")]
        # Serves the purge of expired keys.
        indexes = [models.Index(fields=["created_at"], name="idempotency_created")]


class LedgerCheck(models.Model):
    """One run of the ledger's invariant check (wallets.selectors.full_check): nightly by the beat task,
    or by `manage.py check_ledger`. One row a night; nothing purges them."""

    class Source(models.TextChoices):
        NIGHTLY = "nightly"
        COMMAND = "command"

    # The report keeps this many drifts, each cut at DRIFT_CHARS; drift_count counts them all.
    DRIFTS_KEPT = 200
    DRIFT_CHARS = 1000

    source = models.CharField(max_length=16, choices=Source.choices)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    ok = models.BooleanField()
    wallets_checked = models.PositiveIntegerField()
    drift_count = models.PositiveIntegerField()
    drifts = models.JSONField(default=list, blank=True, help_text="What drifted, each naming its wallet, quota or reservation.")

    class Meta:
        ordering = ["-started_at", "-id"]
        constraints = [
            models.CheckConstraint(condition=Q(ok=True, drift_count=0) | Q(ok=False, drift_count__gt=0),
                                   name="ledger_check_ok_means_no_drift"),
        ]
        # Serves the admin's list, newest first.
        indexes = [models.Index(fields=["-started_at"], name="ledger_check_recent")]

    def __str__(self) -> str:
        return f"ledger check {self.started_at:%Y-%m-%d %H:%M} UTC: " + ("ok" if self.ok else f"{self.drift_count} drift(s)")


class Grant(models.Model):
    """Credits a wallet received, and how much of them is left to spend. Written by wallets.ledger only.

    Every credit into a wallet creates one (a top-up: purchased, a staff credit: granted), every debit
    takes from them in the draw order (wallets/ledger/grants.py) and records a GrantDraw. Invariant:
    the sum of a wallet's remaining equals max(balance, 0) (a wallet overdrawn by usage has nothing
    left in any grant). Micro-credits. The status is derived (status_at), never stored.
    """

    class Category(models.TextChoices):
        PURCHASED = "purchased"
        PROMOTIONAL = "promotional"
        GRANTED = "granted"

    class Status(models.TextChoices):
        ACTIVE = "active"
        SCHEDULED = "scheduled"
        EXPIRED = "expired"
        VOIDED = "voided"
        SPENT = "spent"

    MAX_PRIORITY = 100  # priority 0..100, lower is drawn first
    MAX_RESOURCE_TYPES = 20

    wallet = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="grants", db_index=False)
    category = models.CharField(max_length=16, choices=Category.choices)
    amount = models.BigIntegerField()  # micro-credits granted, > 0
    remaining = models.BigIntegerField()  # micro-credits not spent, expired or voided yet
    priority = models.PositiveSmallIntegerField()
    effective_at = models.DateTimeField(null=True, blank=True, help_text="Not spendable before this.")
    expires_at = models.DateTimeField(null=True, blank=True, help_text="The unspent rest expires at this time.")
    # Resource type codes it applies to; empty = every type.
    resource_types = models.JSONField(default=list, blank=True)
    # The same codes as ",gpu,vm," ("" = every type), written with the grant: the form the draw and
    # admission SQL test with one substring search, the same on both backends (a JSON array is jsonb
    # on PostgreSQL and text on SQLite). Codes are slugs, so a comma never appears inside one.
    applies_to = models.TextField(blank=True, default="")
    reason = models.CharField(max_length=500, blank=True)
    actor = models.CharField(max_length=100, blank=True)
    # The credit that brought it (none for a balance migrated from before grants). DO_NOTHING on the
    # transfers: they are never deleted (the database refuses it, migration 0008), and Django's own
    # PROTECT check would answer before that guard does.
    source_transfer = models.OneToOneField(Transfer, on_delete=models.DO_NOTHING, null=True, blank=True, related_name="grant")
    created_at = models.DateTimeField(auto_now_add=True)
    # Set once, with the transfer that took its unspent rest out (expiry or void).
    closed_at = models.DateTimeField(null=True, blank=True)
    closed_as = models.CharField(max_length=8, blank=True, choices=[("expired", "expired"), ("voided", "voided")])
    closing_transfer = models.OneToOneField(Transfer, on_delete=models.DO_NOTHING, null=True, blank=True, related_name="+")
    close_reason = models.CharField(max_length=500, blank=True)
    closed_by = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["-id"]
        permissions = [("void_grant", "Can void the unspent rest of a credit grant")]
        constraints = [
            models.CheckConstraint(condition=Q(amount__gt=0, amount__lte=MAX_AMOUNT_MICROS), name="grant_amount_bounds"),
            models.CheckConstraint(condition=Q(remaining__gte=0, remaining__lte=F("amount")), name="grant_remaining_bounds"),
            models.CheckConstraint(condition=Q(priority__lte=100), name="grant_priority_bound"),
            models.CheckConstraint(condition=Q(closed_at__isnull=True, closed_as="")
                                   | Q(closed_at__isnull=False, closed_as__in=["expired", "voided"], remaining=0),
                                   name="grant_closed_shape"),
        ]
        indexes = [
            # Serves the draw: a wallet's grants with something left (one SELECT per debit).
            models.Index(fields=["wallet", "id"], condition=Q(remaining__gt=0), name="grant_wallet_open"),
            # Serves admission's "not spendable" sum (grants.unspendable_sql): almost no grant has a date
            # or a resource type scope, so the probe of a wallet without them finds nothing at once.
            models.Index(fields=["wallet"], name="grant_wallet_restricted",
                         condition=Q(remaining__gt=0) & (Q(expires_at__isnull=False) | Q(effective_at__isnull=False)
                                                         | Q(applies_to__gt=""))),
            # Serves the expiry task: open grants past expires_at.
            models.Index(fields=["expires_at"], condition=Q(remaining__gt=0, expires_at__isnull=False), name="grant_due"),
            # Serves the grants list of a wallet, newest first.
            models.Index(fields=["wallet", "-id"], name="grant_wallet_recent"),
        ]

    def __str__(self) -> str:
        return f"grant {self.id} {self.category} {format_amount(self.amount)}"

    def status_at(self, now) -> str:
        if self.closed_as:
            return self.closed_as
        if self.expires_at is not None and self.expires_at <= now:
            return self.Status.EXPIRED
        if self.remaining == 0:
            return self.Status.SPENT
        if self.effective_at is not None and self.effective_at > now:
            return self.Status.SCHEDULED
        return self.Status.ACTIVE


class GrantDraw(models.Model):
    """Which grants a transfer took from (amount > 0) or gave back to (amount < 0), in micro-credits, so a
    statement explains every credit. Written by wallets.ledger only, with the transfer."""

    transfer = models.ForeignKey(Transfer, on_delete=models.DO_NOTHING, related_name="draws")
    grant = models.ForeignKey(Grant, on_delete=models.PROTECT, related_name="draws")
    amount = models.BigIntegerField()

    class Meta:
        constraints = [models.CheckConstraint(condition=~Q(amount=0), name="grant_draw_amount_not_zero")]

    def __str__(self) -> str:
        return f"transfer {self.transfer_id} grant {self.grant_id}: {format_amount(self.amount)}"
