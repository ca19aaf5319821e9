"""Credit grants API: GET/POST /projects/{slug}/grants, POST /grants/{id}/void. Thin over services."""

from django.utils import timezone
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from creditservice.lib.errors import NotFound
from creditservice.lib.fields import CreditsField, StrictSerializer
from creditservice.lib.money import format_amount
from creditservice.lib.schema import errors
from creditservice.lib.text import PlainTextField

from . import access, idempotency, services
from .api import IDEMPOTENCY_PARAM, validated
from .models import Grant

MAX_GRANTS_LISTED = 200  # newest first; a wallet holds at most services.MAX_OPEN_GRANTS open ones


class GrantCreateSerializer(StrictSerializer):
    category = serializers.ChoiceField(choices=[Grant.Category.PROMOTIONAL, Grant.Category.GRANTED])
    amount = CreditsField()
    priority = serializers.IntegerField(required=False, min_value=0, max_value=Grant.MAX_PRIORITY)
    effective_at = serializers.DateTimeField(required=False)
    expires_at = serializers.DateTimeField(required=False)
    resource_types = serializers.ListField(
        child=serializers.SlugField(max_length=63), required=False, max_length=Grant.MAX_RESOURCE_TYPES,
        help_text="Resource type codes it applies to; empty or absent: every type.")
    reason = PlainTextField(max_length=500, allow_blank=False)

    def validate(self, data: dict) -> dict:
        effective_at, expires_at = data.get("effective_at"), data.get("expires_at")
        if expires_at is not None and expires_at <= (effective_at or timezone.now()):
            raise serializers.ValidationError({"expires_at": "must be after effective_at and in the future"})
        if len(set(data.get("resource_types", []))) != len(data.get("resource_types", [])):
            raise serializers.ValidationError({"resource_types": "each resource type once"})
        return data


class GrantVoidSerializer(StrictSerializer):
    reason = PlainTextField(max_length=500, allow_blank=False)


GRANT_FIELDS = {
    "id": serializers.IntegerField(), "category": serializers.CharField(), "amount": serializers.CharField(),
    "remaining": serializers.CharField(), "priority": serializers.IntegerField(), "status": serializers.CharField(),
    "effective_at": serializers.DateTimeField(allow_null=True), "expires_at": serializers.DateTimeField(allow_null=True),
    "resource_types": serializers.ListField(child=serializers.CharField()), "reason": serializers.CharField(),
    "actor": serializers.CharField(), "created_at": serializers.DateTimeField(),
}
# One component class, used for one grant and for the list: a second inline_serializer("Grant") would be
# another class of the same name, which drf-spectacular warns about (and check --deploy shows).
GRANT_SCHEMA = inline_serializer("Grant", GRANT_FIELDS)
GRANT_LIST_SCHEMA = type(GRANT_SCHEMA)(many=True)


def _time(value) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def grant_body(grant: Grant, *, now=None) -> dict:
    now = now or timezone.now()
    status = grant.status_at(now)
    return {
        "id": grant.id, "category": grant.category, "amount": format_amount(grant.amount),
        # What is left to spend: nothing once expired (even before the expiry task moved it) or voided.
        "remaining": format_amount(0 if status in (Grant.Status.EXPIRED, Grant.Status.VOIDED) else grant.remaining),
        "priority": grant.priority, "status": status, "effective_at": _time(grant.effective_at),
        "expires_at": _time(grant.expires_at), "resource_types": grant.resource_types, "reason": grant.reason,
        "actor": grant.actor, "created_at": _time(grant.created_at),
    }


class GrantListView(APIView):
    @extend_schema(responses=GRANT_LIST_SCHEMA)
    def get(self, request: Request, slug: str) -> Response:
        project = access.project_for_caller(request, slug)
        now = timezone.now()
        grants = Grant.objects.filter(wallet__project=project).order_by("-id")[:MAX_GRANTS_LISTED]
        return Response([grant_body(grant, now=now) for grant in grants])

    @extend_schema(request=GrantCreateSerializer, parameters=[IDEMPOTENCY_PARAM],
                   responses={201: GRANT_SCHEMA, **errors(409, 422)})
    def post(self, request: Request, slug: str) -> Response:
        project = access.project_for_caller(request, slug)
        access.require(request, access.GRANT_CREATE)
        data = validated(GrantCreateSerializer, request.data)
        idempotency.require_key(request)
        actor = access.caller_actor(request)

        def operation(effect_key: str) -> tuple[int, dict]:
            grant = services.grant_create(project=project, idempotency_key=effect_key, actor=actor, **data)
            return 201, grant_body(grant)

        return idempotency.run(request, request.data, operation)


class GrantVoidView(APIView):
    @extend_schema(request=GrantVoidSerializer, parameters=[IDEMPOTENCY_PARAM],
                   responses={200: GRANT_SCHEMA, **errors(409)})
    def post(self, request: Request, grant_id: int) -> Response:
        grant = Grant.objects.select_related("wallet__project").filter(id=grant_id).first()
        # A grant of a project the caller may not see is not found, as the project would be.
        if grant is None or not access.visible_projects(request).filter(id=grant.wallet.project_id).exists():
            raise NotFound(f"no grant {grant_id}")
        access.require(request, access.GRANT_VOID)
        data = validated(GrantVoidSerializer, request.data)
        idempotency.require_key(request)
        actor = access.caller_actor(request)

        def operation(effect_key: str) -> tuple[int, dict]:
            return 200, grant_body(services.grant_void(grant=grant, reason=data["reason"], actor=actor))

        return idempotency.run(request, request.data, operation)

