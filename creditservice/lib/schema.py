"""The OpenAPI schema as a client generated from it needs it (SPECTACULAR_SETTINGS POSTPROCESSING_HOOKS).

drf-spectacular documents the success answer of each operation only, and leaves request bodies open
to any field. Our API refuses unknown fields and answers every refusal in one shape, so the schema
said less than the API does: schemathesis found undocumented 400/401/403/404 answers on every
operation and "valid" bodies that the API refused. Here each operation gets the error answers every
operation can give (STANDARD; and 413/415 where there is a body), views name the ones particular to
them with errors(402, 409, ...), every error answer is the one Error component, and request bodies
are closed (additionalProperties: false). creditservice/tests/test_api_schema_fuzz.py holds the
API to the result.
"""

import inspect
from typing import Any

from drf_spectacular.utils import OpenApiResponse

from .fields import StrictSerializer
from .json_parser import MAX_BODY_BYTES

ERROR_COMPONENT = "Error"
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        'Every refusal, in one shape: {"error": "<code>", "detail": ...}. Some carry more fields that say '
        "what would be accepted (a 402 its available credits, a 409 quota_exceeded the limit and usage)."),
    "properties": {
        "error": {"type": "string", "description": "A stable code: validation_error, not_found, insufficient_credits, ..."},
        "detail": {"description": "A message, or for validation_error the problems of each field (by name)."},
    },
    "required": ["error", "detail"],
}

DESCRIPTIONS: dict[int, str] = {
    400: "validation_error: a field, query parameter, header (Idempotency-Key) or the body is not valid; "
         "detail names each problem.",
    401: "unauthenticated: no API key, or one that is unknown or revoked.",
    402: "insufficient_credits (the wallet) or budget_exceeded (the month's budget); `available` says how many "
         "credits may still be used.",
    403: "forbidden: this caller may not do this (a project key acting on another project's object is a 404).",
    404: "not_found: no such object, or one this caller may not see.",
    409: "A conflict with the current state: the object exists already, a quota is reached, the reservation "
         "has ended, or a request with this Idempotency-Key is still in progress (retry it).",
    413: f"payload_too_large: a request body is at most {MAX_BODY_BYTES} bytes.",
    415: "unsupported_media_type: send the body as JSON with 'Content-Type: application/json'.",
    422: "Well formed, but past a documented bound (limit_exceeded, amount_limit_exceeded, balance_limit_exceeded) "
         "or an Idempotency-Key reused with another body (idempotency_key_reused).",
    429: "rate_limited: this API key is over its rate limit, or too many requests of this kind for now; retry "
         "after Retry-After seconds.",
    503: "unavailable: the database or the payment provider could not complete it; retry it (with the same "
         "Idempotency-Key: it never repeats an effect).",
}
# Every operation: its input can be invalid, its caller unauthenticated or not allowed, its object absent,
# its API key over its rate limit (API_RATE_LIMIT, wallets/throttling.py), and the database can fail under it.
STANDARD = (400, 401, 403, 404, 429, 503)
WITH_BODY = (413, 415)
_ERROR_CONTENT = {"application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"}}}


def errors(*status_codes: int) -> dict[int, OpenApiResponse]:
    """The error answers particular to one operation, for its extend_schema(responses={...})."""
    return {code: OpenApiResponse(description=DESCRIPTIONS[code]) for code in status_codes}


def _referenced_components(node: Any, found: set[str]) -> set[str]:
    if isinstance(node, dict):
        ref = node.get("$ref", "")
        if ref.startswith("#/components/schemas/"):
            found.add(ref.rsplit("/", 1)[1])
        for value in node.values():
            _referenced_components(value, found)
    elif isinstance(node, list):
        for value in node:
            _referenced_components(value, found)
    return found


def document_errors(result: dict, generator: Any, request: Any, public: bool) -> dict:
    """drf-spectacular postprocessing hook: error answers on every operation, closed request bodies."""
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components[ERROR_COMPONENT] = ERROR_SCHEMA
    request_components: set[str] = set()
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            codes = {*STANDARD, *(WITH_BODY if "requestBody" in operation else ()),
                     *(int(code) for code in responses if code.isdigit() and int(code) >= 400)}
            for code in codes:
                described = responses.get(str(code), {}).get("description") or DESCRIPTIONS[code]
                responses[str(code)] = {"description": described, "content": _ERROR_CONTENT}
            operation["responses"] = dict(sorted(responses.items()))
            _referenced_components(operation.get("requestBody", {}), request_components)
    # Close every schema a request body uses, and the ones those use in turn (a usage batch's events).
    pending = set(request_components)
    while pending:
        name = pending.pop()
        schema = components.get(name, {})
        if schema.get("type") == "object" and "properties" in schema:
            schema["additionalProperties"] = False
        if schema.get("description") == inspect.cleandoc(StrictSerializer.__doc__ or ""):
            del schema["description"]  # the base class's docstring says nothing about this body
        inner = _referenced_components(schema, set()) - request_components
        request_components |= inner
        pending |= inner
    return result
