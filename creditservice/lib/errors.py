"""One error shape for the whole API: {"error": "<code>", "detail": ...} with the right status."""

import logging
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.db import InterfaceError, OperationalError
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response

from .metrics import DATABASE_ERRORS


class ApiError(Exception):
    """A refusal the caller can act on. Raise it from services; the API renders it."""

    status_code = status.HTTP_400_BAD_REQUEST
    code = "bad_request"

    def __init__(self, detail: Any = None, *, code: str | None = None, status_code: int | None = None, **extra: Any):
        super().__init__(detail)
        self.detail = detail if detail is not None else self.code.replace("_", " ")
        if code:
            self.code = code
        if status_code:
            self.status_code = status_code
        self.extra = extra

    def as_body(self) -> dict[str, Any]:
        return {"error": self.code, "detail": self.detail, **self.extra}


class ValidationFailed(ApiError):
    status_code = 400
    code = "validation_error"


class NotFound(ApiError):
    status_code = 404
    code = "not_found"


class Forbidden(ApiError):
    status_code = 403
    code = "forbidden"


class PaymentRequired(ApiError):
    """Every 402 says how many credits the caller may still use: `available` is a required argument."""

    status_code = 402
    code = "payment_required"

    def __init__(self, detail: Any = None, *, available: str, **extra: Any):
        super().__init__(detail, available=available, **extra)


class InsufficientCredits(PaymentRequired):
    code = "insufficient_credits"


class Conflict(ApiError):
    status_code = 409
    code = "conflict"


class LimitExceeded(ApiError):
    """A request that is well formed but would take a stored value past its documented bound."""

    status_code = 422
    code = "limit_exceeded"


class BalanceLimitExceeded(LimitExceeded):
    """The transfer would take a wallet's balance outside ±wallets.ledger.MAX_BALANCE_MICROS."""

    code = "balance_limit_exceeded"


class AmountLimitExceeded(LimitExceeded):
    """One movement of credits larger than money.MAX_AMOUNT_MICROS (a charge, a hold)."""

    code = "amount_limit_exceeded"


class PayloadTooLarge(ApiError):
    status_code = 413
    code = "payload_too_large"


class RateLimited(ApiError):
    """Too many of one thing in a while; answered with Retry-After (seconds), also in the body."""

    status_code = 429
    code = "rate_limited"

    def __init__(self, detail: Any = None, *, retry_after: int, **extra: Any):
        super().__init__(detail, retry_after=retry_after, **extra)
        self.headers = {"Retry-After": str(retry_after)}


class ServiceUnavailable(ApiError):
    status_code = 503
    code = "unavailable"


class DatabaseUnavailable(ServiceUnavailable):
    """The database dropped the request's connection or transaction (a restart, a failover, a terminated
    backend, a lock wait that gave up). The request's transaction was rolled back, unless the failure
    came while it committed; either way a retry with the same Idempotency-Key has exactly one effect
    (commit and release are idempotent by state)."""

    code = "database_unavailable"


log = logging.getLogger(__name__)
# Seconds a client waits before retrying a 503 database_unavailable.
DATABASE_RETRY_AFTER_SECONDS = 1


_DRF_CODES: list[tuple[type[Exception], str]] = [
    (exceptions.NotAuthenticated, "unauthenticated"),
    (exceptions.AuthenticationFailed, "unauthenticated"),
    (exceptions.PermissionDenied, "forbidden"),
    (exceptions.NotFound, "not_found"),
    (exceptions.MethodNotAllowed, "method_not_allowed"),
    (exceptions.NotAcceptable, "not_acceptable"),
    (exceptions.UnsupportedMediaType, "unsupported_media_type"),
    (exceptions.ParseError, "validation_error"),
    (exceptions.ValidationError, "validation_error"),
    (exceptions.Throttled, "throttled"),
]


def database_unavailable_response(exc: Exception) -> Response:
    # OperationalError and InterfaceError are what the driver raises when the server or the connection
    # failed, not when our SQL is wrong (that is a ProgrammingError, DataError or IntegrityError: a 500).
    # A connection that died with its backend is dropped by Django's atomic() when its rollback fails, and
    # otherwise by the health check (CONN_HEALTH_CHECKS) before the next request uses it.
    log.error("database failure during an API request; answered 503", exc_info=exc)
    DATABASE_ERRORS.inc()
    error = DatabaseUnavailable("the database could not complete this request; retry it with the same "
                                "Idempotency-Key, which never repeats an effect")
    response = Response(error.as_body(), status=error.status_code)
    response["Retry-After"] = str(DATABASE_RETRY_AFTER_SECONDS)
    return response


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, ApiError):
        return Response(exc.as_body(), status=exc.status_code, headers=getattr(exc, "headers", None))
    if isinstance(exc, (OperationalError, InterfaceError)):
        return database_unavailable_response(exc)
    if isinstance(exc, Http404):
        return Response({"error": "not_found", "detail": "Not found."}, status=404)
    if isinstance(exc, DjangoPermissionDenied):
        return Response({"error": "forbidden", "detail": "Permission denied."}, status=403)
    if isinstance(exc, exceptions.APIException):
        code = next((c for cls, c in _DRF_CODES if isinstance(exc, cls)), "error")
        detail = exc.detail
        if isinstance(exc, exceptions.ParseError):
            detail = {"body": [str(exc.detail)]}
        if isinstance(exc, exceptions.UnsupportedMediaType):
            request = context.get("request")
            sent = (request.content_type if request is not None else "")[:100]
            detail = f"send the body as JSON with 'Content-Type: application/json' (this request sent {sent!r})"
        response = Response({"error": code, "detail": detail}, status=exc.status_code)
        if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
            response.status_code = 401
            response["WWW-Authenticate"] = 'Bearer realm="api"'
        return response
    return None


def json_error(status_code: int, code: str, detail: Any) -> JsonResponse:
    return JsonResponse({"error": code, "detail": detail}, status=status_code)
