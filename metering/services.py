"""Writes of metering: price versions, collected usage, collection-window state.

Pushed events have their own module (ingest.py) because their hot path is set-based SQL.
"""

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from creditservice.lib.errors import ApiError, ValidationFailed
from creditservice.lib.money import MAX_RATE_PICOS, format_rate
from quotas.models import ResourceType

from .models import MAX_PRICE_PER_SECOND_PICOS, CollectionWindow, MetricQuery, Price, UsageRecord
from .pricing import price_per_matches_metering


class PriceHistoryProtected(ApiError):
    status_code = 409
    code = "price_history_protected"


def price_version_add(
    *, resource_type: ResourceType, unit_price: int, per: str, effective_from: datetime | None = None,
    actor: str = "",
) -> Price:
    """Add a price version (unit_price: pico-credits per `per`) from `effective_from` (default now)
    and close the one before it.

    History is never rewritten: the new version must start after the latest existing version
    started, and the only change made to an older version is setting its open effective_to.
    """
    effective_from = effective_from or timezone.now()
    if per not in Price.Per.values:
        raise ValidationFailed({"per": [f"must be one of {', '.join(Price.Per.values)}"]})
    if not price_per_matches_metering(per, resource_type.metering):
        raise ValidationFailed({"per": [f"{resource_type.code} is billed in {resource_type.billing_unit}; "
                                        f"a price {Price.Per(per).label} does not apply"]})
    maximum = MAX_PRICE_PER_SECOND_PICOS if per == Price.Per.UNIT_SECOND else MAX_RATE_PICOS
    if isinstance(unit_price, bool) or not isinstance(unit_price, int) or not 0 <= unit_price <= maximum:
        raise ValidationFailed({"unit_price": [f"must be zero or more and at most {format_rate(maximum)} credits"]})
    with transaction.atomic():
        # Lock the type so two staff changes at once are serialized (lock, re-check, write).
        ResourceType.objects.select_for_update().get(id=resource_type.id)
        latest = Price.objects.filter(resource_type=resource_type).order_by("-effective_from").first()
        if latest is not None:
            if effective_from <= latest.effective_from:
                raise PriceHistoryProtected(
                    f"a new version must start after {latest.effective_from.isoformat()}; past versions are kept as they are"
                )
            if latest.effective_to is not None and latest.effective_to != effective_from:
                raise PriceHistoryProtected("the latest version is already closed; a gap would leave usage unpriced")
            Price.objects.filter(id=latest.id, effective_to__isnull=True).update(effective_to=effective_from)
        return Price.objects.create(resource_type=resource_type, unit_price=unit_price, per=per,
                                    effective_from=effective_from, created_by=actor)


def usage_records_store(
    *, resource_type_id: int, window_start: datetime, window_end: datetime, quantities: dict[int, int],
    source: str, source_reference: str,
) -> int:
    """Set the quantity of one source's records for a window (project id → micro-units); idempotent.

    A re-collection replaces the value; updated_at only moves when the quantity changes, so billing's
    "changed since my run" finds real changes only. Returns the number of rows written.
    """
    if not quantities:
        return 0
    table = UsageRecord._meta.db_table
    now = timezone.now()
    # Raw SQL bypasses the fields' adaptation: on SQLite datetimes must be stored as the ORM stores them.
    adapt = connection.ops.adapt_datetimefield_value
    start, end, stamp = adapt(window_start), adapt(window_end), adapt(now)
    rows = [
        (project_id, resource_type_id, start, end, quantity, source, source_reference, stamp, stamp)
        for project_id, quantity in sorted(quantities.items())  # one lock order for every writer
    ]
    sql = (
        f"INSERT INTO {table} (project_id, resource_type_id, window_start, window_end, quantity, source, "
        "source_reference, created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (project_id, resource_type_id, window_start, source) DO UPDATE SET "
        "quantity = EXCLUDED.quantity, source_reference = EXCLUDED.source_reference, updated_at = EXCLUDED.updated_at "
        f"WHERE {table}.quantity <> EXCLUDED.quantity"
    )
    written = 0
    with transaction.atomic(), connection.cursor() as cursor:
        for chunk_start in range(0, len(rows), 1000):
            chunk = rows[chunk_start:chunk_start + 1000]
            cursor.executemany(sql, chunk)
            written += len(chunk)
    return written


def collection_window_get(*, metric_query: MetricQuery, window_start: datetime, window_end: datetime) -> CollectionWindow:
    window, _ = CollectionWindow.objects.get_or_create(
        metric_query=metric_query, window_start=window_start, defaults={"window_end": window_end}
    )
    return window


def collection_window_record(
    *, window: CollectionWindow, collected: bool, error: str = "", records_stored: int = 0, series_refused: int = 0,
    back_off: bool = True, now: datetime | None = None,
) -> CollectionWindow:
    """Record one attempt. A collected window stays collected (a repeat is a quiet no-op on status).

    A failure sets when the periodic run may retry it (back_off=False: the store was unreachable, which
    says nothing about this window; the next run tries again).
    """
    now = now or timezone.now()
    window.attempts += 1
    window.last_attempt_at = now
    window.records_stored = records_stored
    window.series_refused = series_refused
    window.last_error = error[:4000]
    if collected:
        window.status = CollectionWindow.Status.COLLECTED
        window.collected_at = now
    elif window.status != CollectionWindow.Status.COLLECTED:
        window.status = CollectionWindow.Status.FAILED
    window.retry_at = _retry_at(window, now) if window.status == CollectionWindow.Status.FAILED and back_off else None
    window.save(update_fields=["attempts", "last_attempt_at", "records_stored", "series_refused", "last_error",
                               "status", "collected_at", "retry_at"])
    return window


def _retry_at(window: CollectionWindow, now: datetime) -> datetime:
    # attempts counts this failure too; a window collected once never gets here.
    minutes = settings.USAGE_COLLECTION_RETRY_FIRST_MINUTES * 2 ** min(max(window.attempts - 1, 0), 16)
    return now + timedelta(minutes=min(minutes, settings.USAGE_COLLECTION_RETRY_MAX_MINUTES))


def collection_windows_reset(*, window_ids: Iterable[int]) -> int:
    """Mark windows for collection again (admin "retry now" of a collected window re-reads it)."""
    return CollectionWindow.objects.filter(id__in=list(window_ids)).update(status=CollectionWindow.Status.PENDING,
                                                                           retry_at=None)
