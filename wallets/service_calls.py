"""Service calls on the admission hot path without DRF's dispatch.

A reserve or a commit made with an API key is served by a plain Django view: the key is looked up by
the REST API's own authentication (wallets/auth.py), limited by its own throttle (throttling.py), the
body read by its own bounded parser (creditservice/lib/json_parser.py) and every refusal answered by
its own exception handler, so the answers are the ones DRF's view gives, byte for byte. What is left
out is DRF's per-request machinery (Request wrapping, content negotiation, authenticator and
throttle instances), measured at ~15% of a reserve's CPU (docs/performance.md).

Anything else for the same URL (a staff session, another method, a body that is not plain JSON, an
Accept header that does not take JSON) goes to the DRF view, which stays the URL's documented view
for the schema (drf-spectacular reads `view.cls`).
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from creditservice.lib.errors import PayloadTooLarge, api_exception_handler
from creditservice.lib.json_parser import MAX_BODY_BYTES, loads

from .auth import ApiKeyAuthentication, ServicePrincipal
from .throttling import ApiKeyRateThrottle


@dataclass(frozen=True)
class ServiceRequest:
    """What the shared admission code reads of a request (quotas/admission.py): the caller, the REST
    method and path (an idempotency fingerprint is the same from every door) and the headers."""

    user: ServicePrincipal
    method: str
    path: str
    headers: Any  # a mapping with case-insensitive names (Django's request.headers) or a plain dict


# (status, body, extra headers)
Answer = tuple[int, Any, dict[str, str]]

_RENDERER = JSONRenderer()
_AUTHENTICATION = ApiKeyAuthentication()
_THROTTLE = ApiKeyRateThrottle()


def _is_plain_json_call(request: HttpRequest) -> bool:
    meta = request.META
    if meta.get("HTTP_AUTHORIZATION", "")[:7].lower() != "bearer ":
        return False
    accept = meta.get("HTTP_ACCEPT", "")
    if accept and "json" not in accept and "*/*" not in accept:
        return False  # DRF answers 406
    length = meta.get("CONTENT_LENGTH", "")
    if not length or length == "0":
        return True
    if not (length.isascii() and length.isdigit()):
        return False
    media_type, _, params = meta.get("CONTENT_TYPE", "").partition(";")
    return media_type.strip().lower() == "application/json" and params.strip().lower() in ("", "charset=utf-8")


def _body(request: HttpRequest) -> dict:
    declared = request.META.get("CONTENT_LENGTH", "")
    if not declared or declared == "0":
        return {}
    if int(declared) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"a request body is at most {MAX_BODY_BYTES} bytes")
    raw = request.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"a request body is at most {MAX_BODY_BYTES} bytes")
    return loads(raw)


def _response(status: int, body: Any, headers: dict[str, str]) -> HttpResponse:
    response = HttpResponse(_RENDERER.render(body), status=status, content_type="application/json")
    for name, value in headers.items():
        response[name] = value
    return response


def _refusal(exc: Exception) -> HttpResponse:
    drf_response = api_exception_handler(exc, {})
    if drf_response is None:
        raise exc
    headers = {name: value for name, value in drf_response.items() if name.lower() != "content-type"}
    return _response(drf_response.status_code, drf_response.data, headers)


def lean_post(view_class: type[APIView], handle: Callable[..., Answer]) -> Callable[..., HttpResponse]:
    """The URL's view: a POST with an API key and a JSON body (or none) is handle(request, body, **kwargs);
    everything else is view_class's."""
    drf_view = view_class.as_view()

    @csrf_exempt
    def view(request: HttpRequest, **kwargs: Any) -> HttpResponse:
        if request.method != "POST" or not _is_plain_json_call(request):
            return drf_view(request, **kwargs)
        try:
            principal, _ = _AUTHENTICATION.authenticate(request)
            request.auth = principal  # the request's log line names the key (creditservice/lib/request_log.py)
            call = ServiceRequest(user=principal, method=request.method, path=request.path, headers=request.headers)
            _THROTTLE.allow_request(call, None)
            status, body, headers = handle(call, _body(request), **kwargs)
        except Exception as exc:  # the API's one error shape; anything it does not know is a 500
            return _refusal(exc)
        return _response(status, body, headers)

    view.cls = view_class  # drf-spectacular documents the URL by its DRF view
    view.initkwargs = drf_view.initkwargs
    return view
