"""One gRPC call as the REST stack would serve it: Django's per-request connection handling, the API
key from `authorization: Bearer …` (wallets/auth.py), the key's rate limit (wallets/throttling.py), a
log context with the request id, and every refusal answered as a gRPC status (errors.py).
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import grpc
from django.db import InterfaceError, OperationalError, close_old_connections
from rest_framework import exceptions

from creditservice.lib import log_context
from creditservice.lib.errors import DATABASE_RETRY_AFTER_SECONDS, ApiError, database_unavailable_response
from creditservice.lib.metrics import GRPC_CALL_DURATION, GRPC_CALLS
from wallets.auth import ApiKeyAuthentication, ServicePrincipal
from wallets.idempotency import HEADER as IDEMPOTENCY_HEADER
from wallets.service_calls import ServiceRequest
from wallets.throttling import ApiKeyRateThrottle

from .errors import abort, status_code_for

log = logging.getLogger(__name__)
# The same logger as the HTTP request line: one line per call, whichever door it came through.
request_log = logging.getLogger("creditservice.request")
T = TypeVar("T")


@dataclass(frozen=True)
class _Credentials:
    """ApiKeyAuthentication reads the header from a WSGI environ."""

    META: dict[str, str]


def _metadata(context: grpc.ServicerContext) -> dict[str, str]:
    return {item.key.lower(): item.value for item in context.invocation_metadata() if isinstance(item.value, str)}


def authenticate(metadata: dict[str, str]) -> ServicePrincipal:
    """The caller behind `authorization: Bearer <API key>`, by the REST API's own lookup; 401 otherwise."""
    header = metadata.get("authorization", "")
    if not header:
        raise exceptions.NotAuthenticated()
    principal, _ = ApiKeyAuthentication().authenticate(_Credentials(META={"HTTP_AUTHORIZATION": header}))
    return principal


def serve(context: grpc.ServicerContext, *, rpc: str, method: str, path: str, idempotency_key: str | None,
          call: Callable[[ServiceRequest], T]) -> T:
    """Run call() for this gRPC call as a REST request to `method path` would run; abort with its refusal.
    Each call is timed and counted (GRPC_CALL_DURATION, GRPC_CALLS) and logged in one line, as the REST
    request middleware does for HTTP (creditservice/lib/request_log.py)."""
    started = time.perf_counter()
    close_old_connections()  # as Django does at the start and end of every request
    metadata = _metadata(context)
    request_id = log_context.request_id_from(metadata.get("x-request-id"))
    log_context.open_context(request_id)
    answer = _Answer()
    try:
        request = ServiceRequest(user=authenticate(metadata), method=method, path=path,
                              headers={} if idempotency_key is None else {IDEMPOTENCY_HEADER: idempotency_key})
        answer.caller = request.user
        ApiKeyRateThrottle().allow_request(request, None)
        return call(request)
    except ApiError as error:
        retry_after = getattr(error, "headers", {}).get("Retry-After")
        answer.refuse(context, error.status_code, error.as_body(), (("retry-after", retry_after),) if retry_after else ())
    except (exceptions.NotAuthenticated, exceptions.AuthenticationFailed) as error:
        answer.refuse(context, 401, {"error": "unauthenticated", "detail": str(error.detail)})
    except (OperationalError, InterfaceError) as error:
        # The REST answer to a database that dropped the request (logged and counted there): 503, retry.
        response = database_unavailable_response(error)
        answer.refuse(context, 503, dict(response.data), (("retry-after", str(DATABASE_RETRY_AFTER_SECONDS)),))
    except Exception:
        log.exception("unexpected error in gRPC call %s %s", method, path)
        answer.refuse(context, 500, {"error": "server_error", "detail": "An unexpected error occurred; it has been logged."})
    finally:
        _observe(rpc, answer, time.perf_counter() - started, request_id)
        log_context.close_context()
        close_old_connections()
    raise AssertionError("unreachable: abort() raises")


@dataclass
class _Answer:
    """How a call ended, for its log line and counters: OK unless refuse() aborted it."""

    code: str = "OK"
    error: str = ""
    caller: ServicePrincipal | None = None

    def refuse(self, context: grpc.ServicerContext, http_status: int, body: dict, metadata: tuple = ()) -> None:
        self.error = str(body.get("error", "error"))
        self.code = status_code_for(http_status, self.error).name
        abort(context, http_status, body, metadata)


def _observe(rpc: str, answer: _Answer, seconds: float, request_id: str) -> None:
    GRPC_CALL_DURATION.labels(rpc).observe(seconds)
    GRPC_CALLS.labels(rpc, answer.code).inc()
    if not request_log.isEnabledFor(logging.INFO):
        return
    duration_ms = round(seconds * 1000, 3)
    api_key = answer.caller.name if answer.caller is not None else None
    context = log_context.current()
    project = context.project if context is not None else None
    request_log.info("gRPC %s %s %.1f ms api_key=%s project=%s request_id=%s", rpc, answer.code, duration_ms,
                     api_key or "-", project or "-", request_id,
                     extra={"rpc": rpc, "grpc_code": answer.code, "error": answer.error or None,
                            "duration_ms": duration_ms, "api_key": api_key, "project": project,
                            "request_id": request_id})
