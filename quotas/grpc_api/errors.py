"""REST refusals as gRPC statuses. The REST error body travels whole: as JSON in the status message
({"error": code, "detail": ..., and any extra figures such as `available`}) and its code alone in the
trailing metadata `error-code`, so a client branches on the same codes as over HTTP.

By HTTP status: 400 INVALID_ARGUMENT, 401 UNAUTHENTICATED, 403 PERMISSION_DENIED, 404 NOT_FOUND,
402 FAILED_PRECONDITION, 409 ABORTED, 413 INVALID_ARGUMENT, 429 RESOURCE_EXHAUSTED, 503 UNAVAILABLE.
422 is FAILED_PRECONDITION: our 422s (idempotency_key_reused, amount/balance_limit_exceeded) depend on
what was stored before (the key's first body, the wallet's balance), not on the request alone.
Admission's refusals are FAILED_PRECONDITION whatever their HTTP status (quota_exceeded is a 409 and
project_suspended a 403 over REST): the request was fine, the project's state refused it; retry when
that changed.
"""

import json
from typing import Any

import grpc

ADMISSION_REFUSALS = frozenset({"insufficient_credits", "budget_exceeded", "quota_exceeded", "project_suspended"})
BY_HTTP_STATUS = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    402: grpc.StatusCode.FAILED_PRECONDITION,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.ABORTED,
    413: grpc.StatusCode.INVALID_ARGUMENT,
    422: grpc.StatusCode.FAILED_PRECONDITION,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    503: grpc.StatusCode.UNAVAILABLE,
}
ERROR_CODE_KEY = "error-code"


def status_code_for(http_status: int, error_code: str) -> grpc.StatusCode:
    if error_code in ADMISSION_REFUSALS:
        return grpc.StatusCode.FAILED_PRECONDITION
    if http_status in BY_HTTP_STATUS:
        return BY_HTTP_STATUS[http_status]
    return grpc.StatusCode.INTERNAL if http_status >= 500 else grpc.StatusCode.INVALID_ARGUMENT


def abort(context: grpc.ServicerContext, http_status: int, body: dict[str, Any],
          metadata: tuple[tuple[str, str], ...] = ()) -> None:
    """End the call with the REST answer's status and body (raises, as context.abort does)."""
    code = str(body.get("error", "error"))
    context.set_trailing_metadata(((ERROR_CODE_KEY, code), *metadata))
    context.abort(status_code_for(http_status, code), json.dumps(body, separators=(",", ":"), default=str))
