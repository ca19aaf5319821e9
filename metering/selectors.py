"""Reads of metering for billing, the admin and the portal."""

from datetime import datetime

from django.db.models import Count, Exists, Max, OuterRef, QuerySet, Sum

from .models import CollectionWindow, MetricQuery, UsageRecord


def usage_totals(
    *, window_start: datetime | None = None, changed_since: datetime | None = None,
    project_ids: list[int] | None = None, resource_type_ids: list[int] | None = None,
) -> QuerySet:
    """Usage per (project, resource type, window), summed over sources; at least one filter is needed.

    Rows are dicts: project_id, resource_type_id, window_start, window_end, quantity (integer
    micro-units of the type's billing unit), updated_at (latest change of any record of that window), record_count.
    Ordered by project_id, resource_type_id, window_start.

    changed_since selects windows with a record written at or after that moment. updated_at is the
    writer's transaction time and a writer may commit a moment later, so pass a margin (e.g. the
    previous run's start minus 5 minutes) and charge only the difference to what was charged.
    """
    if window_start is None and changed_since is None:
        raise ValueError("usage_totals needs window_start or changed_since")
    records = UsageRecord.objects.all()
    if window_start is not None:
        records = records.filter(window_start=window_start)
    if project_ids is not None:
        records = records.filter(project_id__in=project_ids)
    if resource_type_ids is not None:
        records = records.filter(resource_type_id__in=resource_type_ids)
    if changed_since is not None:
        # A window counts as changed when any of its sources was written since then; all its
        # sources are summed, so the total is the window's whole usage, not the change.
        records = records.filter(Exists(UsageRecord.objects.filter(
            project_id=OuterRef("project_id"), resource_type_id=OuterRef("resource_type_id"),
            window_start=OuterRef("window_start"), updated_at__gte=changed_since,
        )))
    return (
        records.values("project_id", "resource_type_id", "window_start", "window_end")
        .annotate(quantity=Sum("quantity"), updated_at=Max("updated_at"), record_count=Count("id"))
        .order_by("project_id", "resource_type_id", "window_start")
    )


def usage_records_for(*, project_id: int, resource_type_id: int, window_start: datetime) -> QuerySet[UsageRecord]:
    """The records behind one usage total (one per source), for a charge's breakdown."""
    return UsageRecord.objects.filter(
        project_id=project_id, resource_type_id=resource_type_id, window_start=window_start
    ).order_by("source")


def collection_complete(*, window_start: datetime) -> bool:
    """True when every enabled metric query has collected this window (push needs no collection)."""
    enabled = MetricQuery.objects.filter(enabled=True)
    collected = CollectionWindow.objects.filter(
        metric_query__in=enabled, window_start=window_start, status=CollectionWindow.Status.COLLECTED
    )
    return collected.count() == enabled.count()


def collection_gaps(*, before: datetime | None = None) -> QuerySet[CollectionWindow]:
    """Windows attempted and not collected (failed or reset), oldest first."""
    windows = CollectionWindow.objects.exclude(status=CollectionWindow.Status.COLLECTED)
    if before is not None:
        windows = windows.filter(window_start__lt=before)
    return windows.select_related("metric_query__resource_type").order_by("window_start")
