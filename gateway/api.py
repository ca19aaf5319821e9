"""Gateway admission over HTTP: the authorize endpoint a gateway asks before each call, and the routes API.

GET /gateway/authorize is nginx's auth_request subrequest (Envoy's ext_authz HTTP service works the
same: any method, and the original path may follow /gateway/authorize/). nginx passes only 2xx, 401
and 403 on, so a refusal is a 403 whose X-Credits-Error header says why; the shipped nginx config
(deploy/nginx/) turns it into the 402 or 403 the client sees.
"""

from dataclasses import replace

from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from creditservice.lib.errors import ApiError, LimitExceeded, NotFound, ValidationFailed
from creditservice.lib.money import format_amount
from creditservice.lib.schema import errors
from creditservice.lib.text import TextError, clean_text
from quotas import selectors as quota_selectors
from quotas.models import ResourceType
from wallets import access, idempotency
from wallets.api import IDEMPOTENCY_PARAM, validated
from wallets.auth import ApiKeyAuthentication, ServicePrincipal, principal_with

from . import services
from .models import MAX_REQUEST_ID_LENGTH, MeteredRoute
from .serializers import MeteredRouteSerializer, route_body

# At most this many routes: every web worker holds them all and scans them per call.
MAX_ROUTES = 1000
_PREFIX = "/gateway/authorize"
# The request id's source is part of the key, so a client's Idempotency-Key never meets nginx's ids.
_REQUEST_ID_SOURCES = (("Idempotency-Key", "idem:"), ("X-Request-ID", "req:"))


def _header(request: Request, name: str, max_length: int) -> str | None:
    value = request.headers.get(name)
    if value is None:
        return None
    try:
        return clean_text(value.strip(), max_length=max_length)
    except TextError as exc:
        raise ValidationFailed({name: [str(exc)]}) from None


def _call(request: Request, subpath: str) -> tuple[str, str, str]:
    """(method, uri, request id) of the call the gateway asks about."""
    method = _header(request, "X-Original-Method", 16) or request.method
    uri = _header(request, "X-Original-URI", 8192)
    if uri is None:
        if not subpath:
            raise ValidationFailed({"X-Original-URI": ["the gateway must send the original request URI"]})
        query = request.META.get("QUERY_STRING", "")
        uri = "/" + subpath + (f"?{query}" if query else "")
    for name, source in _REQUEST_ID_SOURCES:
        value = _header(request, name, MAX_REQUEST_ID_LENGTH - len(source))
        if value:
            return method, uri, source + value
    raise ValidationFailed({"X-Request-ID": ["the gateway must send a request id (nginx: $request_id)"]})


def _denial(error: ApiError) -> Response:
    """A refusal as nginx's auth_request can pass it on: 403, with the reason in X-Credits-Error."""
    response = Response(error.as_body(), status=403)
    response["X-Credits-Error"] = error.code
    if "available" in error.extra:
        response["X-Credits-Available"] = error.extra["available"]
    return response


_KEY_PROJECT = quota_selectors.project_ref_sql("k.project_id")


class GatewayKeyAuthentication(ApiKeyAuthentication):
    """The API key and its project (what admission needs of it) in one lookup: the authorize hot path
    is then that lookup and one call of the charge function."""

    def lookup(self, raw_key: str) -> ServicePrincipal | None:
        found = principal_with(raw_key, columns=_KEY_PROJECT[0], joins=_KEY_PROJECT[1])
        if found is None:
            return None
        principal, row = found
        return replace(principal, context=quota_selectors.project_ref_from_row(row))


@method_decorator(csrf_exempt, name="dispatch")
class AuthorizeView(APIView):
    # A project API key only (forwarded by the gateway); never a browser session.
    authentication_classes = [GatewayKeyAuthentication]
    # The gateway asks once per call of every client: the per-key API rate limit would turn busy
    # clients' calls into 429s, which nginx can only answer as errors (the gateway limits rates itself).
    throttle_classes: list = []

    @extend_schema(exclude=True)
    def get(self, request: Request, subpath: str = "") -> Response:
        caller = request.user
        if not isinstance(caller, ServicePrincipal) or caller.is_platform:
            return Response({"error": "unauthenticated", "detail": "gateway calls need a project API key"},
                            status=401, headers={"WWW-Authenticate": 'Bearer realm="api"'})
        method, uri, request_id = _call(request, subpath)
        try:
            project = caller.context if isinstance(caller.context, quota_selectors.ProjectRef) else None
            admission = services.gateway_authorize(project_id=caller.project_id, request_id=request_id,
                                                   method=method, uri=uri, actor=caller.actor, project=project)
        except ApiError as error:
            if error.status_code in (402, 403):
                return _denial(error)
            raise
        response = Response(status=204)
        response["X-Credits-Project"] = admission.project
        if admission.metered:
            response["X-Credits-Available"] = format_amount(admission.available)
            response["X-Credits-Charged"] = format_amount(admission.charged)
        if admission.replayed:
            response["X-Credits-Replayed"] = "true"
        return response

    # Envoy's ext_authz sends the original method as the check request's own.
    post = put = patch = delete = head = options = get


_ROUTE_FIELDS = {
    "id": serializers.IntegerField(), "method": serializers.CharField(), "path_prefix": serializers.CharField(),
    "resource_type": serializers.CharField(), "price": serializers.CharField(), "created_at": serializers.DateTimeField(),
}
ROUTE_SCHEMA = inline_serializer("MeteredRoute", _ROUTE_FIELDS)


class RouteListView(APIView):
    @extend_schema(responses=inline_serializer("MeteredRouteList", _ROUTE_FIELDS, many=True))
    def get(self, request: Request) -> Response:
        """The metered routes (at most MAX_ROUTES), by path prefix."""
        access.require(request, access.GATEWAY_ROUTES_READ)
        routes = MeteredRoute.objects.select_related("resource_type")[:MAX_ROUTES]
        return Response([route_body(route) for route in routes])

    @extend_schema(request=MeteredRouteSerializer, parameters=[IDEMPOTENCY_PARAM],
                   responses={201: ROUTE_SCHEMA, **errors(409, 422)})
    def post(self, request: Request) -> Response:
        """Meter calls of a method (or "*") under a path prefix at a price per call."""
        access.require(request, access.GATEWAY_ROUTE_CREATE)
        data = validated(MeteredRouteSerializer, request.data)
        idempotency.require_key(request)
        resource_type = ResourceType.objects.filter(code=data["resource_type"]).first()
        if resource_type is None:
            raise NotFound(f"no resource type {data['resource_type']!r}")

        def operation(effect_key: str) -> tuple[int, dict]:
            if MeteredRoute.objects.count() >= MAX_ROUTES:
                raise LimitExceeded(f"at most {MAX_ROUTES} metered routes", limit=MAX_ROUTES)
            route = services.metered_route_create(method=data["method"], path_prefix=data["path_prefix"],
                                                  resource_type=resource_type, price=data["price"])
            return 201, route_body(route)

        return idempotency.run(request, request.data, operation)
