"""One middleware observes every request: its id, its duration, its metrics and its log line.

First in both middleware lists (settings.MIDDLEWARE and the lean one of service calls,
creditservice/lib/lean_handler.py), so it times everything the others do and sees every answer,
theirs included. It costs a few microseconds and no I/O besides the log line: admission calls go
through it.

The log line names the API key by its name (never its secret) and the path without its query
string (a query may carry a secret).
"""

import logging
import time
from collections.abc import Callable

from django.core.signals import request_finished
from django.dispatch import receiver
from django.http import HttpRequest, HttpResponse

from . import log_context
from .metrics import REQUEST_DURATION, RESPONSES

log = logging.getLogger("creditservice.request")

REQUEST_ID_HEADER = "X-Request-ID"
# Label values are closed sets: any other method a client makes up is "other", as is a path no
# named route matched.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Load balancers poll these every few seconds: an answer that says "fine" is logged at DEBUG only.
PROBES = frozenset({"healthz", "readyz"})
PATH_MAX_LENGTH = 256
# URL parts that are secrets (a password-reset link's token and user id): logged as "[redacted]".
SECRET_URL_KWARGS = ("token", "uidb64")
API_KEY_NAME_MAX_LENGTH = 100


class RequestObservationMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        started = time.perf_counter()
        request_id = log_context.request_id_from(request.headers.get(REQUEST_ID_HEADER))
        log_context.open_context(request_id)
        response = self.get_response(request)
        seconds = time.perf_counter() - started
        response[REQUEST_ID_HEADER] = request_id
        observe(request, response, seconds, request_id)
        return response


@receiver(request_finished)
def close_request_context(**kwargs: object) -> None:
    # Not when the middleware returns: Django logs a 4xx/5xx answer ("Not Found: /x") after the
    # middleware chain, and that line belongs to the request too. The server closes the answer last.
    log_context.close_context()


def observe(request: HttpRequest, response: HttpResponse, seconds: float, request_id: str) -> None:
    endpoint = endpoint_name(request)
    method = request.method if request.method in METHODS else "other"
    status = response.status_code
    REQUEST_DURATION.labels(endpoint, method).observe(seconds)
    RESPONSES.labels(str(status)).inc()

    level = logging.DEBUG if endpoint in PROBES and status < 400 else logging.INFO
    if not log.isEnabledFor(level):
        return
    path = printable(loggable_path(request)[:PATH_MAX_LENGTH])
    duration_ms = round(seconds * 1000, 3)
    api_key = api_key_name(request)
    project = project_name(request)
    log.log(level, "%s %s %s %.1f ms api_key=%s project=%s request_id=%s",
            method, path, status, duration_ms, api_key or "-", project or "-", request_id,
            extra={"method": method, "path": path, "status": status, "duration_ms": duration_ms,
                   "endpoint": endpoint, "api_key": api_key, "project": project, "request_id": request_id})


def loggable_path(request: HttpRequest) -> str:
    """The path with the secret parts of its URL (SECRET_URL_KWARGS) redacted."""
    path = request.path
    match = request.resolver_match
    if match is not None:
        for name in SECRET_URL_KWARGS:
            value = match.kwargs.get(name)
            if isinstance(value, str) and value:
                path = path.replace(value, "[redacted]")
    return path


def endpoint_name(request: HttpRequest) -> str:
    """The matched route's name with its namespace ("admin:index", "reservation-create"), or "other"."""
    match = request.resolver_match
    if match is None or not match.url_name:
        return "other"
    return match.view_name


def project_name(request: HttpRequest) -> str | None:
    """The project the request asked for (wallets.access notes every lookup), else its URL's slug."""
    context = log_context.current()
    project = context.project if context is not None else None
    if project is None and request.resolver_match is not None:
        project = request.resolver_match.kwargs.get("slug")
    return printable(project[: log_context.PROJECT_MAX_LENGTH]) if isinstance(project, str) else None


def api_key_name(request: HttpRequest) -> str | None:
    # wallets.auth.ApiKeyAuthentication: DRF sets request.auth on the Django request too, to the
    # caller's ServicePrincipal; a session caller's auth is None. (lib cannot import the app.)
    principal = getattr(request, "auth", None)
    name = getattr(principal, "name", None) if hasattr(principal, "api_key_id") else None
    return printable(name[:API_KEY_NAME_MAX_LENGTH]) if isinstance(name, str) else None


def printable(text: str) -> str:
    """text with control characters escaped, so a value from a URL cannot forge a line of the log."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}" for c in text)
