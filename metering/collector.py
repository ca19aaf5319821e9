"""Pull usage from a Prometheus-compatible store with PromQL, one window at a time.

For each enabled MetricQuery and each closed window, the query is evaluated at the window's end
(`/api/v1/query?time=<end>`), the answer is validated, and each series becomes the UsageRecord of
the project named by its label. Nothing doubtful is ever stored as usage: an unreachable or slow
store, an error answer, a malformed body, NaN/Inf/negative values, values beyond the quantity bound,
labels no project could have and unknown projects are logged and counted, and the window stays not
collected so the next run tries it again. One bad window never stops the others: whatever goes
wrong while reading or storing it is recorded on that window, and the run goes on with the next
window and query. A window that was never collected is found by walking every window of the
look-back period, so none is skipped.
"""

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation, localcontext
from typing import Any

import requests
import urllib3
from django.conf import settings
from django.utils import timezone

from creditservice.lib.metrics import USAGE_SAMPLES_REFUSED, USAGE_WINDOWS
from creditservice.lib.money import MAX_QUANTITY_MICROS, MICROS_PER_UNIT, format_micros, measured_to_micros
from creditservice.lib.text import TextError, clean_text
from quotas.models import ResourceType
from wallets.models import Project

from . import services
from .models import CollectionWindow, MetricQuery, UsageRecord
from .windows import window_length, window_start_of, windows_between

logger = logging.getLogger(__name__)

SECONDS_PER_HOUR = Decimal(3600)
# The largest sample accepted, in the query's own unit (seconds are 3600 times more): checked before
# any arithmetic, so "1e20" or a 60-digit value is refused, never divided, rounded or overflowed.
_MAX_SAMPLE = {
    MetricQuery.ResultUnit.SECONDS: Decimal(MAX_QUANTITY_MICROS) / MICROS_PER_UNIT * SECONDS_PER_HOUR,
    MetricQuery.ResultUnit.HOURS: Decimal(MAX_QUANTITY_MICROS) / MICROS_PER_UNIT,
    MetricQuery.ResultUnit.UNITS: Decimal(MAX_QUANTITY_MICROS) / MICROS_PER_UNIT,
}
PROJECT_SLUG_MAX_LENGTH = Project._meta.get_field("slug").max_length
# Errors kept on a window: enough to diagnose, bounded so a bad query cannot bloat the row.
MAX_PROBLEMS_KEPT = 20
# Bytes of one query's answer: about 100 per series, so room for 500,000 projects in one window.
MAX_ANSWER_BYTES = 64 * 1024 * 1024


class PrometheusError(Exception):
    """The store did not give a usable answer for this query."""


class PrometheusUnavailable(PrometheusError):
    """Connection refused, DNS, timeout: the store is down or slow; stop this run, retry later."""


@dataclass(frozen=True)
class Sample:
    labels: dict[str, str]
    value: str  # as the store sent it: "900", "NaN", "+Inf", "9.000000000000001e+02"


@dataclass
class WindowOutcome:
    resource_type: str
    window_start: datetime
    collected: bool
    records_stored: int = 0
    series_refused: int = 0
    error: str = ""
    unavailable: bool = False


@dataclass
class CollectionSummary:
    configured: bool = True
    outcomes: list[WindowOutcome] = field(default_factory=list)
    stopped_early: str = ""
    gaps_beyond_lookback: int = 0
    deferred: int = 0  # failed windows whose retry is not due yet (back-off)

    @property
    def collected(self) -> int:
        return sum(1 for o in self.outcomes if o.collected)

    @property
    def failed(self) -> int:
        return sum(1 for o in self.outcomes if not o.collected)

    @property
    def records_stored(self) -> int:
        return sum(o.records_stored for o in self.outcomes)

    @property
    def series_refused(self) -> int:
        return sum(o.series_refused for o in self.outcomes)


def render_promql(template: str, length: timedelta) -> str:
    """Fill the placeholders. str.replace, not str.format: PromQL itself uses braces ({job="vm"})."""
    seconds = int(length.total_seconds())
    return template.replace("{window_seconds}", str(seconds)).replace("{window}", f"{seconds}s")


def prometheus_query(promql: str, at: datetime) -> list[Sample]:
    """Evaluate an instant query at `at`; validate the answer's shape (a vector of samples)."""
    if not settings.PROMETHEUS_URL:
        raise PrometheusUnavailable("PROMETHEUS_URL is not set")
    url = settings.PROMETHEUS_URL.rstrip("/") + "/api/v1/query"
    timeout = settings.PROMETHEUS_TIMEOUT_SECONDS
    # requests' timeout bounds each connect and each read, not the answer: a store that trickles its
    # answer would hold the collector as long as it likes. So the answer is read against a deadline of
    # its own, and a bound on its size (the last read may take one more timeout: 2x at worst).
    deadline = time.monotonic() + timeout
    try:
        with requests.get(url, params={"query": promql, "time": f"{at.timestamp():.3f}"}, timeout=timeout,
                          stream=True) as response:
            content = _read_answer(response, deadline)
    except (requests.Timeout, urllib3.exceptions.TimeoutError):
        raise PrometheusUnavailable(f"no answer within {timeout} s")
    except (requests.RequestException, urllib3.exceptions.HTTPError, OSError) as exc:
        raise PrometheusUnavailable(f"cannot reach the metrics store: {exc.__class__.__name__}")
    try:
        body = json.loads(content)
    except ValueError:  # UnicodeDecodeError is one
        raise PrometheusError(f"HTTP {response.status_code}: the answer is not JSON")
    if not isinstance(body, dict):
        raise PrometheusError("the answer is not a JSON object")
    if body.get("status") != "success":
        raise PrometheusError(f"HTTP {response.status_code}: {body.get('errorType', 'error')}: {body.get('error', '')}"[:500])
    data = body.get("data")
    if not isinstance(data, dict) or data.get("resultType") != "vector" or not isinstance(data.get("result"), list):
        result_type = data.get("resultType") if isinstance(data, dict) else None
        raise PrometheusError(f"expected a vector result, got {result_type!r}")
    samples = []
    for item in data["result"]:
        labels, value = (item.get("metric"), item.get("value")) if isinstance(item, dict) else (None, None)
        if (not isinstance(labels, dict) or not isinstance(value, list) or len(value) != 2
                or not isinstance(value[1], str)):
            raise PrometheusError("a sample is not {metric: {...}, value: [time, \"number\"]}")
        samples.append(Sample(labels={str(k): str(v) for k, v in labels.items()}, value=value[1]))
    return samples


def _read_answer(response: requests.Response, deadline: float) -> bytes:
    """The body, read as it comes (read1: what one read returns, not a full buffer) until the deadline."""
    content = bytearray()
    while chunk := response.raw.read1(65536, decode_content=True):
        content += chunk
        if len(content) > MAX_ANSWER_BYTES:
            raise PrometheusError(f"HTTP {response.status_code}: the answer is larger than {MAX_ANSWER_BYTES} bytes")
        if time.monotonic() > deadline:
            raise requests.Timeout()
    if time.monotonic() > deadline:
        raise requests.Timeout()
    return bytes(content)


def to_billing_quantity(value: str, result_unit: str) -> int:
    """A sample value → micro-units of the billing unit, rounded once. Raises ValueError (MoneyError
    is one) for what is not a number, not finite, negative or beyond the quantity bound."""
    try:
        number = Decimal(value)  # exact: the decimal text the store printed, not a float
    except InvalidOperation:
        raise ValueError(f"not a number: {value[:40]!r}")
    if not number.is_finite():
        raise ValueError(f"not a finite number: {value[:40]}")
    if number < 0:
        raise ValueError(f"negative: {value[:40]}")
    if number > _MAX_SAMPLE[result_unit]:
        raise ValueError(f"above the bound of {format_micros(MAX_QUANTITY_MICROS)} per window: {value[:40]}")
    with localcontext() as context:
        context.prec = 50  # the division is exact enough; the single rounding is measured_to_micros
        if result_unit == MetricQuery.ResultUnit.SECONDS:
            number = number / SECONDS_PER_HOUR
        return measured_to_micros(number)


def _unit_problem(metric_query: MetricQuery) -> str:
    duration = metric_query.resource_type.metering == ResourceType.Metering.DURATION
    if duration and metric_query.result_unit == MetricQuery.ResultUnit.UNITS:
        return f"{metric_query.resource_type.code} is billed in unit-hours; a query returning units cannot be used"
    if not duration and metric_query.result_unit != MetricQuery.ResultUnit.UNITS:
        return f"{metric_query.resource_type.code} is billed per unit; a query returning time cannot be used"
    return ""


def collect_window(*, metric_query: MetricQuery, window_start: datetime, now: datetime | None = None) -> WindowOutcome:
    """Collect one query for one window and record the attempt on its CollectionWindow.

    Nothing that goes wrong with this window escapes: an unexpected error (the database refusing a
    value, a bug) is recorded on the window as a failure, retried with back-off like any other, and
    the caller goes on with the next window and query.
    """
    if window_start_of(window_start) != window_start:
        raise ValueError(f"{window_start.isoformat()} is not the start of a window")
    outcome = _collect_window_recorded(metric_query=metric_query, window_start=window_start, now=now)
    # Counted here, once per window attempt, after its record (or its failure) was written.
    USAGE_WINDOWS.labels(result="collected" if outcome.collected else "failed").inc()
    if outcome.series_refused:
        USAGE_SAMPLES_REFUSED.inc(outcome.series_refused)
    return outcome


def _collect_window_recorded(*, metric_query: MetricQuery, window_start: datetime,
                             now: datetime | None) -> WindowOutcome:
    length = window_length()
    window_end = window_start + length
    code = metric_query.resource_type.code
    window = None
    try:
        window = services.collection_window_get(metric_query=metric_query, window_start=window_start,
                                                window_end=window_end)
        return _collect(metric_query=metric_query, window=window, window_end=window_end, length=length, now=now)
    except Exception as exc:
        error = f"unexpected error: {type(exc).__name__}: {exc}"[:2000]
        logger.exception("usage collection of %s for %s failed", code, window_start.isoformat())
        if window is not None:
            try:
                services.collection_window_record(window=window, collected=False, error=error, now=now)
            except Exception:  # the database itself is failing: the window stays due for the next run
                logger.exception("could not record the failed collection of %s for %s", code, window_start.isoformat())
        return WindowOutcome(resource_type=code, window_start=window_start, collected=False, error=error)


def _collect(*, metric_query: MetricQuery, window: CollectionWindow, window_end: datetime, length: timedelta,
             now: datetime | None) -> WindowOutcome:
    window_start = window.window_start
    code = metric_query.resource_type.code
    outcome = WindowOutcome(resource_type=code, window_start=window_start, collected=False)

    problem = _unit_problem(metric_query)
    samples: list[Sample] = []
    if not problem:
        try:
            samples = prometheus_query(render_promql(metric_query.promql, length), window_end)
        except PrometheusUnavailable as exc:
            problem, outcome.unavailable = str(exc), True
        except PrometheusError as exc:
            problem = str(exc)
    if problem:
        logger.warning("usage collection of %s for %s failed: %s", code, window_start.isoformat(), problem)
        services.collection_window_record(window=window, collected=False, error=problem,
                                          back_off=not outcome.unavailable, now=now)
        outcome.error = problem
        return outcome

    problems: list[str] = []
    by_slug: dict[str, int] = {}
    too_large: set[str] = set()
    for sample in samples:
        slug = sample.labels.get(metric_query.project_label)
        if not slug:
            problems.append(f"series without the {metric_query.project_label!r} label: {sample.labels}"[:300])
            continue
        try:
            clean_text(slug, max_length=PROJECT_SLUG_MAX_LENGTH)
        except TextError as exc:  # NUL or a 1 MB label: no project has it, and PostgreSQL cannot even look it up
            problems.append(f"project label {slug[:80]!r}: {exc}")
            continue
        try:
            quantity = to_billing_quantity(sample.value, metric_query.result_unit)
        except ValueError as exc:
            problems.append(f"project {slug!r}: {exc}")
            continue
        # Several series for one project (a query not summed by project) add up, within the same bound.
        total = by_slug.get(slug, 0) + quantity
        if total > MAX_QUANTITY_MICROS:
            problems.append(f"project {slug!r}: its series add up to more than {format_micros(MAX_QUANTITY_MICROS)}")
            too_large.add(slug)
        by_slug[slug] = total
    for slug in too_large:
        del by_slug[slug]
    projects = dict(Project.objects.filter(slug__in=list(by_slug)).values_list("slug", "id"))
    quantities: dict[int, int] = {}
    for slug, quantity in by_slug.items():
        if slug in projects:
            quantities[projects[slug]] = quantity
        else:
            problems.append(f"unknown project {slug!r}")

    reference = f"metric_query:{metric_query.id} time={window_end.isoformat()}"
    stored = services.usage_records_store(
        resource_type_id=metric_query.resource_type_id, window_start=window_start, window_end=window_end,
        quantities=quantities, source=UsageRecord.Source.PROMETHEUS, source_reference=reference,
    )
    # Good series are stored (idempotently: a retry sets the same values); any refused series keeps the
    # window not collected, visible in the admin and retried, instead of being silently dropped.
    for text in problems[:MAX_PROBLEMS_KEPT]:
        logger.warning("usage collection of %s for %s refused a series: %s", code, window_start.isoformat(), text)
    error = "; ".join(problems[:MAX_PROBLEMS_KEPT]) + (f" (+{len(problems) - MAX_PROBLEMS_KEPT} more)"
                                                         if len(problems) > MAX_PROBLEMS_KEPT else "")
    services.collection_window_record(window=window, collected=not problems, error=error,
                                      records_stored=stored, series_refused=len(problems), now=now)
    outcome.collected, outcome.records_stored, outcome.series_refused, outcome.error = (
        not problems, stored, len(problems), error)
    return outcome


def _gaps_before(metric_query: MetricQuery, first_start: datetime) -> int:
    """Windows from the query's creation up to the look-back that were never collected (counted, not walked)."""
    since = window_start_of(metric_query.created_at)
    if since >= first_start:
        return 0
    expected = int((first_start - since) / window_length())
    collected = CollectionWindow.objects.filter(
        metric_query=metric_query, window_start__gte=since, window_start__lt=first_start,
        status=CollectionWindow.Status.COLLECTED,
    ).count()
    return max(expected - collected, 0)


def collect_due_windows(
    *, now: datetime | None = None, on_window: Callable[[WindowOutcome], Any] | None = None,
) -> CollectionSummary:
    """Collect every closed window of the look-back period not yet collected, oldest first.

    A window is due once it ended USAGE_COLLECTION_DELAY_SECONDS ago (the store's last scrape is in).
    If the store is unreachable or slow the run stops at once (no point timing out on every window);
    the windows stay due for the next run. A window that failed for its own reasons (refused series,
    a query the store rejects) waits for its retry_at: it stays in the admin as failed, not skipped.
    """
    summary = CollectionSummary()
    if not settings.PROMETHEUS_URL:
        logger.info("PROMETHEUS_URL is not set: no usage to collect")
        summary.configured = False
        return summary
    now = now or timezone.now()
    length = window_length()
    last_start = window_start_of(now - timedelta(seconds=settings.USAGE_COLLECTION_DELAY_SECONDS)) - length
    first_start = window_start_of(now - timedelta(hours=settings.USAGE_COLLECTION_LOOKBACK_HOURS))
    queries = list(MetricQuery.objects.filter(enabled=True).select_related("resource_type").order_by("id"))
    summary.gaps_beyond_lookback = sum(_gaps_before(query, first_start) for query in queries)
    if summary.gaps_beyond_lookback:
        logger.error("%d usage windows older than the look-back were never collected; run collect_usage "
                     "--window-start for each (see the admin's collection windows)", summary.gaps_beyond_lookback)
    for metric_query in queries:
        collected = set(CollectionWindow.objects.filter(
            metric_query=metric_query, window_start__gte=first_start, status=CollectionWindow.Status.COLLECTED,
        ).values_list("window_start", flat=True))
        waiting = set(CollectionWindow.objects.filter(
            metric_query=metric_query, window_start__gte=first_start, status=CollectionWindow.Status.FAILED,
            retry_at__gt=now,
        ).values_list("window_start", flat=True))
        summary.deferred += len(waiting)
        for window_start, _ in windows_between(first_start, last_start):
            if window_start in collected or window_start in waiting:
                continue
            outcome = collect_window(metric_query=metric_query, window_start=window_start, now=now)
            summary.outcomes.append(outcome)
            if on_window:
                on_window(outcome)
            if outcome.unavailable:
                summary.stopped_early = outcome.error
                return summary
    return summary


def collect_one_window(
    *, window_start: datetime, resource_type_code: str | None = None,
    on_window: Callable[[WindowOutcome], Any] | None = None,
) -> CollectionSummary:
    """Collect (again) one window for every enabled query, or one type's query, whatever its status."""
    summary = CollectionSummary(configured=bool(settings.PROMETHEUS_URL))
    queries = MetricQuery.objects.filter(enabled=True).select_related("resource_type").order_by("id")
    if resource_type_code:
        queries = queries.filter(resource_type__code=resource_type_code)
    for metric_query in queries:
        outcome = collect_window(metric_query=metric_query, window_start=window_start)
        summary.outcomes.append(outcome)
        if on_window:
            on_window(outcome)
        if outcome.unavailable:
            summary.stopped_early = outcome.error
            break
    return summary
