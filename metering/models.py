"""Usage metering: versioned prices, usage records per window, pushed events and PromQL collection.

Quantities are integer micro-units (creditservice/lib/money.py, 1 unit = 1,000,000) of the resource
type's billing unit: unit-hours for duration types (vm-hours, GiB-hours), units for count types (GiB
of egress). Prices are integer pico-credits (10^-12 credit) per `per`. Integers, because SQLite keeps
decimal columns as floats: both backends must add and compare them exactly.
"""

from django.db import models
from django.db.models import F, Q

from creditservice.lib.money import MAX_RATE_PICOS, format_micros, format_rate
from quotas.models import ResourceType
from wallets.models import Project

# A price per unit-second becomes a rate per unit-hour (× 3600) when a window is charged; bounding it
# by MAX_RATE_PICOS / 3600 keeps that rate inside MAX_RATE_PICOS too.
MAX_PRICE_PER_SECOND_PICOS = MAX_RATE_PICOS // 3600


class Price(models.Model):
    """One version of a resource type's price. Versions are never edited: a change adds a version
    and closes the previous one (effective_to), so a past charge can always be explained."""

    class Per(models.TextChoices):
        # Stated explicitly because a per-second price applied to hours is a 3600x error.
        UNIT_HOUR = "unit_hour", "per unit-hour"
        UNIT_SECOND = "unit_second", "per unit-second"
        UNIT = "unit", "per unit (counted resources)"

    resource_type = models.ForeignKey(ResourceType, on_delete=models.PROTECT, related_name="prices")
    # Pico-credits (10^-12 credit) per `per`: a rate carries more places than a balance (12, as the
    # decimal column it replaces had); a charge is rounded once. At most money.MAX_RATE_PICOS per
    # unit or unit-hour, and that / 3600 per unit-second, so a rate per billing unit fits 64 bits.
    unit_price = models.BigIntegerField(help_text="Pico-credits (10^-12 credit) per `per`.")
    per = models.CharField(max_length=12, choices=Per.choices)
    effective_from = models.DateTimeField()
    effective_to = models.DateTimeField(null=True, blank=True, help_text="Set when the next version starts.")
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["resource_type", "-effective_from"]
        constraints = [
            models.CheckConstraint(condition=Q(unit_price__gte=0), name="price_not_negative"),
            models.CheckConstraint(
                condition=Q(per="unit_second", unit_price__lte=MAX_PRICE_PER_SECOND_PICOS)
                | (~Q(per="unit_second") & Q(unit_price__lte=MAX_RATE_PICOS)),
                name="price_within_bound",
            ),
            models.CheckConstraint(
                condition=Q(effective_to__isnull=True) | Q(effective_to__gt=F("effective_from")),
                name="price_period_forward",
            ),
            models.UniqueConstraint(fields=["resource_type", "effective_from"], name="price_version_unique_start"),
            # At most one open-ended version per type: the one in force from now on.
            models.UniqueConstraint(
                fields=["resource_type"], condition=Q(effective_to__isnull=True), name="price_one_open_version"
            ),
        ]

    def __str__(self) -> str:
        return (f"{self.resource_type.code} {format_rate(self.unit_price)} {self.get_per_display()} "
                f"from {self.effective_from:%Y-%m-%d %H:%M}")


class MetricQuery(models.Model):
    """How to read one resource type's usage from the metrics store (Prometheus HTTP API)."""

    class ResultUnit(models.TextChoices):
        # What the query returns; converted to the type's billing unit (seconds / 3600 = hours).
        SECONDS = "seconds", "unit-seconds (duration types)"
        HOURS = "hours", "unit-hours (duration types)"
        UNITS = "units", "units (count types)"

    resource_type = models.OneToOneField(ResourceType, on_delete=models.PROTECT, related_name="metric_query")
    promql = models.TextField(
        help_text=(
            "PromQL evaluated at the end of each window. Placeholders: {window} (the window as a range, "
            "e.g. 3600s) and {window_seconds} (its length in seconds). Example: "
            "sum by (project) (increase(vm_running_seconds_total[{window}]))"
        )
    )
    project_label = models.CharField(max_length=100, default="project", help_text="The label holding the project slug.")
    result_unit = models.CharField(max_length=8, choices=ResultUnit.choices, default=ResultUnit.SECONDS)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "metric queries"

    def __str__(self) -> str:
        return f"{self.resource_type.code}: {self.promql[:60]}"


class UsageRecord(models.Model):
    """The usage of one project and resource type in one window, from one source.

    Billing sums the sources of a window. updated_at moves whenever the quantity changes (a late
    pushed event, a re-collection), which is how billing finds windows to adjust after a run.
    """

    class Source(models.TextChoices):
        PROMETHEUS = "prometheus"
        PUSH = "push"

    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="usage_records")
    resource_type = models.ForeignKey(ResourceType, on_delete=models.PROTECT, related_name="usage_records")
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    # Micro-units of the type's billing unit (ResourceType.billing_unit).
    quantity = models.BigIntegerField()
    source = models.CharField(max_length=12, choices=Source.choices)
    source_reference = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["project", "resource_type", "window_start", "source"], name="usage_record_unique_window"
            ),
            models.CheckConstraint(condition=Q(quantity__gte=0), name="usage_record_quantity_not_negative"),
            models.CheckConstraint(condition=Q(window_end__gt=F("window_start")), name="usage_record_window_forward"),
        ]
        indexes = [
            # Billing reads one window across all projects: usage_totals(window_start=...).
            models.Index(fields=["window_start"], name="usage_record_window_idx"),
            # Billing finds windows changed since its last run: usage_totals(changed_since=...).
            models.Index(fields=["updated_at"], name="usage_record_updated_idx"),
        ]

    def __str__(self) -> str:
        return (f"{self.project_id}/{self.resource_type_id} {self.window_start:%Y-%m-%d %H:%M} "
                f"{format_micros(self.quantity)} ({self.source})")


class UsageEvent(models.Model):
    """One pushed usage event. The unique (project, event_id) is what makes a resend a duplicate."""

    project = models.ForeignKey(Project, on_delete=models.PROTECT, related_name="usage_events")
    event_id = models.CharField(max_length=200)
    resource_type = models.ForeignKey(ResourceType, on_delete=models.PROTECT, related_name="usage_events")
    # Micro-units of the type's billing unit.
    quantity = models.BigIntegerField()
    timestamp = models.DateTimeField()
    window_start = models.DateTimeField()
    received_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "event_id"], name="usage_event_unique_id"),
            models.CheckConstraint(condition=Q(quantity__gte=0), name="usage_event_quantity_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.project_id}:{self.event_id}"


class CollectionWindow(models.Model):
    """Whether one metric query has been collected for one window; failed windows are retried."""

    class Status(models.TextChoices):
        PENDING = "pending"
        COLLECTED = "collected"
        FAILED = "failed"

    metric_query = models.ForeignKey(MetricQuery, on_delete=models.CASCADE, related_name="windows")
    window_start = models.DateTimeField()
    window_end = models.DateTimeField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    # A failed window is not retried by the periodic run before this (back-off doubling per failure);
    # staff's "retry now" and `collect_usage --window-start` do not wait.
    retry_at = models.DateTimeField(null=True, blank=True)
    collected_at = models.DateTimeField(null=True, blank=True)
    # Of the last attempt: series stored as usage, and series refused (bad value, unknown project, ...).
    records_stored = models.PositiveIntegerField(default=0)
    series_refused = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["-window_start"]
        constraints = [
            models.UniqueConstraint(fields=["metric_query", "window_start"], name="collection_window_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.metric_query.resource_type.code} {self.window_start:%Y-%m-%d %H:%M} {self.status}"
