"""Every Prometheus metric creditservice exports, in one place (served at GET /metrics).

Labels are closed sets (a result, an outcome, an endpoint's route pattern): never a project, a key or
an id, so the number of series stays fixed however many tenants there are. Amounts in metrics are
floats by Prometheus' nature; they are for graphs and alerts, never read back as money.

Under several processes (gunicorn workers, Celery) prometheus_client's multiprocess mode writes
each process's values to PROMETHEUS_MULTIPROC_DIR; the variable must be set before this module is
first imported (creditservice/lib/metrics_exposition.py reads them back).
"""

from prometheus_client import Counter, Histogram

PREFIX = "creditservice"

# Request latency fit for a hot path of a few milliseconds, and for the slow tail.
LATENCY_BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
# Batch work (a billing run, a collection window) takes seconds to minutes.
BATCH_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

# --- Admission ------------------------------------------------------------------------------------
# result: allowed, insufficient_credits, budget_exceeded, quota_exceeded, project_suspended, and any
# other refusal code admission answers with (a closed set of error codes).
ADMISSION_DECISIONS = Counter(
    f"{PREFIX}_admission_decisions_total", "Admission decisions (check and reserve) by result.", ["result"]
)
# outcome: created, committed, released, expired.
RESERVATIONS = Counter(f"{PREFIX}_reservations_total", "Reservations by outcome.", ["outcome"])

# --- HTTP -----------------------------------------------------------------------------------------
# endpoint: the URL pattern's name (or "other"), never the raw path.
REQUEST_DURATION = Histogram(
    f"{PREFIX}_http_request_duration_seconds",
    "Time to answer an HTTP request, by endpoint and method.",
    ["endpoint", "method"],
    buckets=LATENCY_BUCKETS,
)
# rpc: the gRPC method (CheckAdmission, Reserve, ...); code: the gRPC status name (OK, FAILED_PRECONDITION, ...).
GRPC_CALL_DURATION = Histogram(
    f"{PREFIX}_grpc_call_duration_seconds", "Time to answer a gRPC admission call, by method.", ["rpc"],
    buckets=LATENCY_BUCKETS,
)
GRPC_CALLS = Counter(f"{PREFIX}_grpc_calls_total", "gRPC admission calls by method and status code.", ["rpc", "code"])
RESPONSES = Counter(f"{PREFIX}_http_responses_total", "HTTP answers by status code.", ["status"])
RATE_LIMITED = Counter(f"{PREFIX}_rate_limited_total", "Requests refused with 429 by the rate limiter.", ["scope"])
RATE_LIMITER_ERRORS = Counter(
    f"{PREFIX}_rate_limiter_errors_total", "Rate limiter store failures (the request was let through)."
)

# --- Payments and webhooks ------------------------------------------------------------------------
# type: Stripe's event type; result: processed, duplicate, ignored, invalid_signature, failed.
STRIPE_WEBHOOK_EVENTS = Counter(
    f"{PREFIX}_stripe_webhook_events_total", "Stripe webhook events received, by type and result.", ["type", "result"]
)
# result: delivered, failed (will be retried), gave_up.
OUTBOUND_WEBHOOK_DELIVERIES = Counter(
    f"{PREFIX}_outbound_webhook_deliveries_total", "Outbound webhook delivery attempts by result.", ["result"]
)

# --- Billing --------------------------------------------------------------------------------------
# state: the run's final state (succeeded, partial, failed).
BILLING_RUNS = Counter(f"{PREFIX}_billing_runs_total", "Billing runs finished, by state.", ["state"])
BILLING_RUN_DURATION = Histogram(
    f"{PREFIX}_billing_run_duration_seconds", "Duration of a billing run.", buckets=BATCH_BUCKETS
)
BILLING_PROJECTS = Counter(f"{PREFIX}_billing_projects_total", "Projects billed by billing runs.")
BILLING_CHARGES = Counter(f"{PREFIX}_billing_charges_total", "Charges written by billing runs.")
BILLING_CREDITS_CHARGED = Counter(f"{PREFIX}_billing_credits_charged_total", "Credits charged by billing runs.")
BILLING_FAILURES = Counter(f"{PREFIX}_billing_failures_total", "Project charges a billing run could not make (owed).")

# --- Usage ----------------------------------------------------------------------------------------
USAGE_WINDOWS = Counter(
    f"{PREFIX}_usage_collection_windows_total", "Usage collection windows by result (collected, failed).", ["result"]
)
USAGE_SAMPLES_REFUSED = Counter(
    f"{PREFIX}_usage_samples_refused_total", "Samples from the metrics store refused (out of bounds, unknown series)."
)
# result: accepted, duplicate, rejected; reason: the rejection's error code ("" otherwise).
INGESTED_EVENTS = Counter(
    f"{PREFIX}_usage_events_total", "Pushed usage events by result and rejection reason.", ["result", "reason"]
)

# --- Infrastructure -------------------------------------------------------------------------------
# task: the Celery task's name; outcome: succeeded, failed, retried.
CELERY_TASKS = Counter(f"{PREFIX}_celery_tasks_total", "Celery task runs by task and outcome.", ["task", "outcome"])
DATABASE_ERRORS = Counter(
    f"{PREFIX}_database_errors_total", "Database connection failures answered as 503 database_unavailable."
)
BROKER_ERRORS = Counter(
    f"{PREFIX}_broker_errors_total", "Broker failures when enqueueing (the work stays in the outbox)."
)
