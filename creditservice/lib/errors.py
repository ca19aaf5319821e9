"""One error shape for the whole API: {"error": "<code>", "detail": ...} with the right status."""

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, JsonResponse
from rest_framework import exceptions, status
from rest_framework.response import Response


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


class InsufficientCredits(ApiError):
    status_code = 402
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


class ServiceUnavailable(ApiError):
    status_code = 503
    code = "unavailable"


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


def api_exception_handler(exc: Exception, context: dict) -> Response | None:
    if isinstance(exc, ApiError):
        return Response(exc.as_body(), status=exc.status_code)
    if isinstance(exc, Http404):
        return Response({"error": "not_found", "detail": "Not found."}, status=404)
    if isinstance(exc, DjangoPermissionDenied):
        return Response({"error": "forbidden", "detail": "Permission denied."}, status=403)
    if isinstance(exc, exceptions.APIException):
        code = next((c for cls, c in _DRF_CODES if isinstance(exc, cls)), "error")
        detail = exc.detail
        if isinstance(exc, exceptions.ParseError):
            detail = {"body": [str(exc.detail)]}
        response = Response({"error": code, "detail": detail}, status=exc.status_code)
        if isinstance(exc, (exceptions.NotAuthenticated, exceptions.AuthenticationFailed)):
            response.status_code = 401
            response["WWW-Authenticate"] = 'Bearer realm="api"'
        return response
    return None


def json_error(status_code: int, code: str, detail: Any) -> JsonResponse:
    return JsonResponse({"error": code, "detail": detail}, status=status_code)
