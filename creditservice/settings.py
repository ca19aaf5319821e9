"""Settings, read from the environment in one place (see .env.example for every variable)."""

import sys
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

from creditservice.lib.rates import RateFormatError, parse_rate
from creditservice.startup import POSTGRESQL_ENGINE, SECRET_KEY_MISSING, database_config

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = BASE_DIR / "var"

env = environ.Env()
# Under pytest the dev secret is allowed; production must set SECRET_KEY.
TESTING = env.bool("CREDITSERVICE_TESTING", default="pytest" in sys.modules)
if not TESTING:
    # The variables already in the environment win. The suite ignores .env (make run writes DEBUG=1
    # there), so it runs the same on a developer's machine as on a clean clone.
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)

_DEV_SECRET = "dev-only-insecure-secret-key-change-me"
SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not (DEBUG or TESTING):
        # A missing secret in production stops start-up instead of signing sessions with a known key.
        raise ImproperlyConfigured(SECRET_KEY_MISSING)
    SECRET_KEY = _DEV_SECRET

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# --- Production: cookies and HTTPS (`manage.py check --deploy` is clean with DEBUG=0) ---
# Secure cookies unless DEBUG (or the test suite): browsers send them over HTTPS only (and to
# http://localhost). Set SESSION_COOKIE_SECURE=0 and CSRF_COOKIE_SECURE=0 to sign in over plain HTTP
# elsewhere. Neither cookie is readable by scripts but the CSRF one, which forms need; both SameSite=Lax.
_PRODUCTION = not (DEBUG or TESTING)
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=_PRODUCTION)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=_PRODUCTION)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
# Browsers take HSTS from HTTPS answers only, so it is harmless on a plain-HTTP development server.
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31_536_000 if _PRODUCTION else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
# TLS ends at the proxy in front, which redirects HTTP to HTTPS; SECURE_SSL_REDIRECT=1 makes Django do it.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
if env.bool("TRUST_X_FORWARDED_PROTO", default=False):
    # Only behind a proxy that sets X-Forwarded-Proto itself (and drops the client's own).
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# The --deploy warnings left on purpose, each a decision of whoever runs the service:
SILENCED_SYSTEM_CHECKS = [
    "security.W008",  # SECURE_SSL_REDIRECT: the proxy redirects (above)
    "security.W005",  # SECURE_HSTS_INCLUDE_SUBDOMAINS: the subdomains belong to the domain's owner
    "security.W021",  # SECURE_HSTS_PRELOAD: joining the browsers' preload list is the domain owner's call
]
PORT = env.int("PORT", default=8000)
# Public base URL, used for Checkout success/cancel links and outbound webhook payloads.
SITE_URL = env.str("SITE_URL", default=f"http://127.0.0.1:{PORT}")

INSTALLED_APPS = [
    # django.contrib.admin, with the staff dashboard on its home page (portal/admin_site.py).
    "portal.admin_apps.StaffAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "drf_spectacular",
    # Swagger UI's and Redoc's files served from here (/static/), not from a CDN: /api/docs/ works offline.
    "drf_spectacular_sidecar",
    "django_celery_beat",
    # Sign-in throttle for the portal and the admin (see "Sign-in throttle" below).
    "axes",
    # Dependencies point one way: portal -> billing -> metering -> quotas -> wallets; payments -> wallets.
    "wallets",
    "quotas",
    # Gateway admission (per-call metering at the edge): above quotas, beside metering.
    "gateway",
    "metering",
    "billing",
    "payments",
    "portal",
]

MIDDLEWARE = [
    # First: the request id, the request's duration, its metrics and its log line (also in the lean
    # stack of creditservice/lib/lean_handler.py).
    "creditservice.lib.request_log.RequestObservationMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "creditservice.lib.paths.ApiPathGuardMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    # Last, as django-axes requires: it answers a locked-out sign-in.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "creditservice.urls"
WSGI_APPLICATION = "creditservice.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Embedded default: a SQLite file under var/. Set DATABASE_URL for PostgreSQL.
# A malformed URL or an engine we do not support stops start-up with one line naming DATABASE_URL.
DATABASES = {"default": database_config(env.str("DATABASE_URL", default="") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == POSTGRESQL_ENGINE:
    DATABASES["default"].setdefault("OPTIONS", {})
    if env.bool("DB_PREPARED_STATEMENTS", default=True):
        # Server-side binding lets psycopg prepare the hot statements (+13-17% measured);
        # PgBouncer in transaction mode then needs 1.21 or later.
        DATABASES["default"]["OPTIONS"].update({"server_side_binding": True, "prepare_threshold": 5})
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
else:
    # SQLite as a real backend (web, worker and beat share the file):
    # - IMMEDIATE: a transaction takes the write lock when it begins. A deferred one reads first and
    #   then fails at once with "database is locked" when it upgrades to write while another writer
    #   holds the file; the busy timeout does not apply to that upgrade. So no long work in atomic().
    # - timeout: seconds a writer waits for the lock (SQLite's busy timeout) before it fails.
    # - WAL: readers never block the writer nor wait for it. synchronous=NORMAL in WAL mode: a crash of
    #   the process loses nothing; a power loss may lose the last commits, never corrupts the file.
    #   Django itself turns foreign keys on for every connection.
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].setdefault("transaction_mode", "IMMEDIATE")
    DATABASES["default"]["OPTIONS"].setdefault("timeout", 20)
    DATABASES["default"]["OPTIONS"].setdefault("init_command", "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL")
    # Tests run threads against the database, so theirs is a file too (in-memory SQLite is one connection's).
    _name = str(DATABASES["default"]["NAME"])
    DATABASES["default"].setdefault("TEST", {}).setdefault(
        "NAME", f"{_name.removesuffix('.sqlite3')}.test.sqlite3" if _name not in ("", ":memory:") else None,
    )
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# django-axes first: it refuses a locked-out username and address before the password is even checked.
AUTHENTICATION_BACKENDS = ["axes.backends.AxesStandaloneBackend", "django.contrib.auth.backends.ModelBackend"]

# --- Sign-in throttle (django-axes): the portal's and the admin's login forms ---
# Failed sign-ins are counted per username and client address (REMOTE_ADDR: behind a proxy, the
# proxy's); LOGIN_FAILURE_LIMIT failures lock that pair out for LOGIN_LOCKOUT_MINUTES (429, a page that
# says when to retry), counted again from the last failure. A successful sign-in clears the count. The
# count is in the database, so every web worker shares it; only failures are stored, not every sign-in.
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("LOGIN_LOCKOUT_MINUTES", default=15))
if AXES_FAILURE_LIMIT < 1 or AXES_COOLOFF_TIME <= timedelta(0):
    raise ImproperlyConfigured("LOGIN_FAILURE_LIMIT and LOGIN_LOCKOUT_MINUTES must be at least 1")
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_DISABLE_ACCESS_LOG = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
WHITENOISE_AUTOREFRESH = DEBUG or TESTING
STATICFILES_DIRS = [BASE_DIR / "static"] if (BASE_DIR / "static").exists() else []

LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "portal:index"
LOGOUT_REDIRECT_URL = "login"

# Password-reset mails carry working links (superusers' too), so outside DEBUG no mail may reach a log:
# the console backend is DEBUG's default only. Without EMAIL_BACKEND, DEBUG off sends no mail at all
# (each unsent message is logged without its body) and start-up warns (portal.W001); the console or
# file backend outside DEBUG is refused (portal.E001). For SMTP: EMAIL_BACKEND=
# django.core.mail.backends.smtp.EmailBackend with EMAIL_HOST, EMAIL_PORT, EMAIL_HOST_USER,
# EMAIL_HOST_PASSWORD and EMAIL_USE_TLS.
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="") or (
    "django.core.mail.backends.console.EmailBackend" if DEBUG else "creditservice.lib.mail.UnsentEmailBackend")
EMAIL_HOST = env.str("EMAIL_HOST", default="localhost")
EMAIL_PORT = env.int("EMAIL_PORT", default=25)
EMAIL_HOST_USER = env.str("EMAIL_HOST_USER", default="")
EMAIL_HOST_PASSWORD = env.str("EMAIL_HOST_PASSWORD", default="")
EMAIL_USE_TLS = env.bool("EMAIL_USE_TLS", default=False)
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT_SECONDS", default=10)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="billing@creditservice.local")

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "wallets.auth.ApiKeyAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # Per API key (API_RATE_LIMIT, or the key's own rate_limit); runs after authentication and permissions.
    "DEFAULT_THROTTLE_CLASSES": ["wallets.throttling.ApiKeyRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # JSON only, bounded in size and depth, UTF-8, no key twice (creditservice/lib/json_parser.py).
    "DEFAULT_PARSER_CLASSES": ["creditservice.lib.json_parser.BoundedJSONParser"],
    "EXCEPTION_HANDLER": "creditservice.lib.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
}
if DEBUG:
    REST_FRAMEWORK["DEFAULT_RENDERER_CLASSES"].append("rest_framework.renderers.BrowsableAPIRenderer")

SPECTACULAR_SETTINGS = {
    "TITLE": "creditservice API",
    "DESCRIPTION": (
        "Wallets, ledger, admission control and usage for the platform. Amounts are decimal strings "
        "in credits with at most 6 decimal places. Errors have one shape: "
        '{"error": "<code>", "detail": ...}. Services call it with an API key (Authorization: Bearer); '
        "staff signed in to the admin may use it from the browser too (session and CSRF token). Every "
        "path works with or without its trailing slash. Request bodies are JSON (Content-Type: "
        "application/json), at most 1 MiB, and no field is accepted that is not documented here."
    ),
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    # Generated clients authenticate with a key; the browser session stays out of the schema (it is not
    # something a client sends, and schemathesis took the documented session cookie for a required one).
    "AUTHENTICATION_WHITELIST": ["wallets.auth.ApiKeyAuthentication"],
    # Error answers on every operation and closed request bodies (creditservice/lib/schema.py).
    "POSTPROCESSING_HOOKS": ["drf_spectacular.hooks.postprocess_schema_enums", "creditservice.lib.schema.document_errors"],
    "ENUM_NAME_OVERRIDES": {"CheckoutSessionStatusEnum": "payments.models.CheckoutSession.Status"},
    # The docs page loads its scripts from our static files (drf_spectacular_sidecar), never a CDN's @latest.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# --- Celery -------------------------------------------------------------------------------
# Embedded default: kombu's filesystem transport under var/celery (CELERY_FILESYSTEM_DIR) needs no server.
_CELERY_FS = Path(env.str("CELERY_FILESYSTEM_DIR", default="") or VAR_DIR / "celery")
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="") or env.str("REDIS_URL", default="") or "filesystem://"
# A publish is a nudge, never a wait: every task we send is for work a database row already holds (a
# webhook delivery, billing chunks, a collection window) and a beat sweep finds it anyway
# (creditservice/lib/enqueue.py). So a request never waits on the broker: one attempt, no retry, and
# bounded connect and read timeouts: a stopped broker (refused) fails the publish at once, an
# unreachable one (no answer to connect) or a hung one (accepts, never replies) within
# BROKER_TIMEOUT_SECONDS (twice that at worst: a slow connect, then no reply); the caller logs, counts
# and goes on. kombu's defaults retry for 0.6 s when refused and wait forever on a hung Redis. Redis
# answers in well under a millisecond, so the bound leaves it a wide margin. A worker's own connection
# keeps retrying (the worker passes broker_connection_retry and _max_retries itself, not these options).
BROKER_TIMEOUT_SECONDS = env.float("BROKER_TIMEOUT_SECONDS", default=0.25)
if not 0 < BROKER_TIMEOUT_SECONDS <= 5:
    raise ImproperlyConfigured("BROKER_TIMEOUT_SECONDS must be above 0 and at most 5 (a request may wait this long)")
CELERY_TASK_PUBLISH_RETRY = False
CELERY_BROKER_CONNECTION_TIMEOUT = BROKER_TIMEOUT_SECONDS
CELERY_BROKER_TRANSPORT_OPTIONS = {
    # One connect attempt when a publish finds its pooled connection closed (kombu's default_channel
    # would otherwise retry after sleeping 2 s).
    "max_retries": 0,
    # Redis (redis-py); other transports ignore them. A worker reads with BRPOP from its event loop,
    # only once the socket is readable, so the read timeout never cuts its 1 s BRPOP short.
    "socket_connect_timeout": BROKER_TIMEOUT_SECONDS,
    "socket_timeout": BROKER_TIMEOUT_SECONDS,
}
if CELERY_BROKER_URL.startswith("filesystem://"):
    for sub in ("out", "processed", "control"):
        (_CELERY_FS / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS |= {
        # Without it kombu keeps its exchange table in ./control, wherever the process started.
        "control_folder": str(_CELERY_FS / "control"),
        "data_folder_in": str(_CELERY_FS / "out"),
        "data_folder_out": str(_CELERY_FS / "out"),
        "processed_folder": str(_CELERY_FS / "processed"),
        "store_processed": False,
    }
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
# A task's message is acknowledged when it finished, and given back to the broker when the process
# running it died (SIGKILL, out of memory): the task runs again, so every task is safe to run twice.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TIMEZONE = "UTC"

# --- Money and ledger ---------------------------------------------------------------------
# How long an Idempotency-Key and its stored answer are kept (purged hourly). At least a day: a client
# retrying after an outage must still get its first answer, not a second effect.
_idempotency_key_hours = env.int("IDEMPOTENCY_KEY_TTL_HOURS", default=48)
if not 24 <= _idempotency_key_hours <= 10 * 365 * 24:
    raise ImproperlyConfigured("IDEMPOTENCY_KEY_TTL_HOURS must be at least 24 (a retry after an outage must "
                               "still find its first answer) and at most ten years")
IDEMPOTENCY_KEY_TTL = timedelta(hours=_idempotency_key_hours)
# A claimed key whose request has not finished after this long is taken as abandoned (a crash).
IDEMPOTENCY_LOCK_TIMEOUT = timedelta(seconds=env.int("IDEMPOTENCY_LOCK_TIMEOUT_SECONDS", default=60))

# --- Admission ----------------------------------------------------------------------------
RESERVATION_DEFAULT_TTL_SECONDS = env.int("RESERVATION_DEFAULT_TTL_SECONDS", default=300)
RESERVATION_MAX_TTL_SECONDS = env.int("RESERVATION_MAX_TTL_SECONDS", default=86400)
MIN_RUNTIME_HOURS = env.int("MIN_RUNTIME_HOURS", default=24)
# The gRPC admission API (`manage.py grpc_serve`, quotas/grpc_api): where it listens, and how many calls it
# serves at once (one thread and one database connection each).
GRPC_HOST = env.str("GRPC_HOST", default="127.0.0.1")
GRPC_PORT = env.int("GRPC_PORT", default=50051)
GRPC_MAX_WORKERS = env.int("GRPC_MAX_WORKERS", default=8)
# Gateway admission: each web worker caches the metered routes this many seconds (a route added or
# changed in the admin or the API is in force within that time on every worker).
GATEWAY_ROUTE_CACHE_SECONDS = env.int("GATEWAY_ROUTE_CACHE_SECONDS", default=5)
# How long a gateway charge row (the claim on a request id) is kept before the hourly purge deletes it;
# its ledger transfer stays. Unset (0): kept for ever, because statements split gateway charges by
# resource type through the row (billing/statements.py), so a purge makes older months' statements
# show those charges as one line. Never below IDEMPOTENCY_KEY_TTL: a client's Idempotency-Key is the
# request id, and a retry inside that window must still find its claim or it is charged twice.
_gateway_charge_days = env.int("GATEWAY_CHARGE_RETENTION_DAYS", default=0)
if not 0 <= _gateway_charge_days <= 100 * 366:
    raise ImproperlyConfigured("GATEWAY_CHARGE_RETENTION_DAYS must be 0 (keep) or a number of days up to 100 years")
GATEWAY_CHARGE_RETENTION = timedelta(days=_gateway_charge_days) if _gateway_charge_days else None
if GATEWAY_CHARGE_RETENTION is not None and GATEWAY_CHARGE_RETENTION < IDEMPOTENCY_KEY_TTL:
    raise ImproperlyConfigured("GATEWAY_CHARGE_RETENTION_DAYS must be at least IDEMPOTENCY_KEY_TTL_HOURS "
                               "(a replayed request must still find its charge)")

# --- Metrics (GET /metrics, creditservice/lib/metrics_exposition.py) ------------------------------
# Set: a scrape must send `Authorization: Bearer <METRICS_TOKEN>` (else 401); empty: /metrics is open.
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# Dotted paths of prometheus_client collector classes, each instantiated for every scrape (gauges read
# from the database, say); the web /metrics serves them with the counters.
# The default: the database's gauges for alerting (creditservice/state_metrics.py).
METRICS_SCRAPE_COLLECTORS = env.list(
    "METRICS_SCRAPE_COLLECTORS", default=["creditservice.state_metrics.StateCollector"])
# A Celery worker on a host of its own serves its counters on this port (0: it does not; under
# `make run` the web /metrics already shows them). Same token as the web's.
METRICS_PORT = env.int("METRICS_PORT", default=0)
METRICS_ADDR = env.str("METRICS_ADDR", default="0.0.0.0")

# --- Billing and lifecycle ----------------------------------------------------------------
BILLING_WINDOW_MINUTES = env.int("BILLING_WINDOW_MINUTES", default=60)
GRACE_PERIOD_HOURS = env.int("GRACE_PERIOD_HOURS", default=24)
USAGE_LATENESS_HOURS = env.int("USAGE_LATENESS_HOURS", default=48)
PROMETHEUS_URL = env.str("PROMETHEUS_URL", default="")
# Seconds for one query's whole answer, however the store sends it (twice this at worst: a read that
# began just before the deadline); a slower answer is not used and the window is asked again later.
PROMETHEUS_TIMEOUT_SECONDS = env.int("PROMETHEUS_TIMEOUT_SECONDS", default=10)
# Usage collection: a window is queried once it ended this long ago (the last scrape is in), and
# windows not collected are retried for this many hours back (older gaps are reported, not walked).
USAGE_COLLECTION_DELAY_SECONDS = env.int("USAGE_COLLECTION_DELAY_SECONDS", default=60)
USAGE_COLLECTION_LOOKBACK_HOURS = env.int("USAGE_COLLECTION_LOOKBACK_HOURS", default=USAGE_LATENESS_HOURS)
# A window that failed (refused series, a query the store rejects) waits before the periodic run retries
# it: FIRST minutes after the first failure, doubling up to MAX. An unreachable store does not count.
USAGE_COLLECTION_RETRY_FIRST_MINUTES = env.int("USAGE_COLLECTION_RETRY_FIRST_MINUTES", default=5)
USAGE_COLLECTION_RETRY_MAX_MINUTES = env.int("USAGE_COLLECTION_RETRY_MAX_MINUTES", default=60)
OUTBOUND_WEBHOOK_SECRET = env.str("OUTBOUND_WEBHOOK_SECRET", default="")
# Projects per billing chunk: one short transaction each, so admission is never blocked for long.
BILLING_CHUNK_SIZE = env.int("BILLING_CHUNK_SIZE", default=5000)
# A running billing run (or chunk) silent for this long is taken as crashed and may be taken over.
BILLING_RUN_LEASE_SECONDS = env.int("BILLING_RUN_LEASE_SECONDS", default=600)
# Celery workers that take chunks of one run in parallel (besides the one that started it).
BILLING_PARALLEL_WORKERS = env.int("BILLING_PARALLEL_WORKERS", default=2)
# What a billing run could not charge is owed and retried by the hourly beat: FIRST seconds after the
# first failure, doubling up to MAX. From the CAP-th failed attempt on it is retried every MAX seconds
# and shown to staff as past the cap (it is never dropped). At most BATCH owed rows are retried per beat.
BILLING_RETRY_FIRST_SECONDS = env.int("BILLING_RETRY_FIRST_SECONDS", default=1800)
BILLING_RETRY_MAX_SECONDS = env.int("BILLING_RETRY_MAX_SECONDS", default=6 * 3600)
BILLING_RETRY_ATTEMPTS_CAP = env.int("BILLING_RETRY_ATTEMPTS_CAP", default=6)
BILLING_RETRY_BATCH = env.int("BILLING_RETRY_BATCH", default=200)
OUTBOUND_WEBHOOK_TIMEOUT_SECONDS = env.int("OUTBOUND_WEBHOOK_TIMEOUT_SECONDS", default=10)
OUTBOUND_WEBHOOK_MAX_ATTEMPTS = env.int("OUTBOUND_WEBHOOK_MAX_ATTEMPTS", default=8)
# Retry n waits OUTBOUND_WEBHOOK_BACKOFF_SECONDS * 2**(n-1): 30 s, 1 min, 2 min, ... about 1 h in all.
OUTBOUND_WEBHOOK_BACKOFF_SECONDS = env.int("OUTBOUND_WEBHOOK_BACKOFF_SECONDS", default=30)

# --- Stripe -------------------------------------------------------------------------------
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="")
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default="")
STRIPE_CURRENCY = env.str("STRIPE_CURRENCY", default="usd")
# Credits bought with one unit of the currency (1 credit = 1 USD by default).
CREDITS_PER_CURRENCY_UNIT = env.str("CREDITS_PER_CURRENCY_UNIT", default="1")
STRIPE_API_BASE = env.str("STRIPE_API_BASE", default="https://api.stripe.com")
TOPUP_MIN_CREDITS = env.str("TOPUP_MIN_CREDITS", default="5")
TOPUP_MAX_CREDITS = env.str("TOPUP_MAX_CREDITS", default="10000")
TOPUP_PRESETS = env.list("TOPUP_PRESETS", default=["10", "25", "50", "100"])
# Origins (scheme://host[:port]) besides SITE_URL's that a caller's Checkout success_url / cancel_url may
# point at, e.g. "https://app.example.com". Any other host is refused (400): a payer is never sent to a
# page of the caller's choosing after paying.
CHECKOUT_RETURN_ORIGINS = env.list("CHECKOUT_RETURN_ORIGINS", default=[])
# Open (unpaid) top-ups one project may start in an hour; more is a 429 rate_limited with Retry-After.
CHECKOUT_SESSIONS_PER_PROJECT_PER_HOUR = env.int("CHECKOUT_SESSIONS_PER_PROJECT_PER_HOUR", default=20)
if CHECKOUT_SESSIONS_PER_PROJECT_PER_HOUR < 1:
    raise ImproperlyConfigured("CHECKOUT_SESSIONS_PER_PROJECT_PER_HOUR must be at least 1")

# --- Rate limits (creditservice/lib/ratelimit.py): a fixed window per API key and per portal user ---
# DRF's format, <count>/<second|minute|hour|day>; empty: no limit. An API key's own rate_limit (admin)
# overrides API_RATE_LIMIT ("unlimited" exempts it). Over the limit: 429 rate_limited with Retry-After.
API_RATE_LIMIT = env.str("API_RATE_LIMIT", default="")
PORTAL_RATE_LIMIT = env.str("PORTAL_RATE_LIMIT", default="60/minute")
for _name in ("API_RATE_LIMIT", "PORTAL_RATE_LIMIT"):
    try:
        parse_rate(globals()[_name])
    except RateFormatError as _exc:
        raise ImproperlyConfigured(f"{_name}: {_exc}, or leave it empty for no limit") from None
# Counted in Redis, shared by every worker: RATE_LIMIT_REDIS_URL, else REDIS_URL, else the broker when it
# is Redis. "memory://" (and the embedded default, no Redis) counts in each process's memory. A store
# that does not answer within RATE_LIMIT_TIMEOUT_SECONDS lets the request through (fails open).
RATE_LIMIT_REDIS_URL = env.str("RATE_LIMIT_REDIS_URL", default="") or env.str("REDIS_URL", default="") or (
    CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(("redis://", "rediss://")) else "")
if RATE_LIMIT_REDIS_URL == "memory://":
    RATE_LIMIT_REDIS_URL = ""
if RATE_LIMIT_REDIS_URL and not RATE_LIMIT_REDIS_URL.startswith(("redis://", "rediss://", "unix://")):
    raise ImproperlyConfigured("RATE_LIMIT_REDIS_URL must be a redis://, rediss:// or unix:// URL, or memory://")
RATE_LIMIT_TIMEOUT_SECONDS = env.float("RATE_LIMIT_TIMEOUT_SECONDS", default=0.1)
if not 0 < RATE_LIMIT_TIMEOUT_SECONDS <= 5:
    raise ImproperlyConfigured("RATE_LIMIT_TIMEOUT_SECONDS must be above 0 and at most 5 (a request may wait this long)")

# --- Logs: console (readable lines) or json (one JSON object per line, creditservice/lib/log_format.py) ---
LOG_FORMAT = env.str("LOG_FORMAT", default="console")
if LOG_FORMAT not in ("console", "json"):
    raise ImproperlyConfigured("LOG_FORMAT must be console or json")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "creditservice.lib.log_format.JsonFormatter"},
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "json" if LOG_FORMAT == "json" else "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        # The stripe library logs every API call it makes at INFO.
        "stripe": {"level": env.str("STRIPE_LOG_LEVEL", default="WARNING")},
    },
}
