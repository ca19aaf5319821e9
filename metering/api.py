"""Usage API: POST /api/v1/usage/events (pushed usage). Thin: access here, the work in ingest.py."""

from drf_spectacular.utils import OpenApiExample, extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from creditservice.lib.errors import ValidationFailed
from creditservice.lib.fields import StrictSerializer
from quotas.serializers import QuantityField
from wallets import access
from wallets.auth import ServicePrincipal

from .ingest import MAX_BATCH, MAX_EVENT_ID_LENGTH, usage_events_ingest

QUANTITY_HELP = (
    "Decimal string of ASCII digits with at most 6 places (\"0.25\"; not 0.25, \"2.5e-1\", \".25\" or \" 0.25\"), "
    "from 0 to 10^12, in the resource type's billing unit: unit-hours for types billed over time (vm: vm-hours, "
    "storage_gib: GiB-hours, vcpu: vCPU-hours, ...), units for counted types (network_egress_gib: GiB)."
)


class UsageEventSerializer(StrictSerializer):
    """Documents one event. Batches are validated in ingest.py (one pass, no per-event serializer)."""

    id = serializers.CharField(max_length=MAX_EVENT_ID_LENGTH, help_text=(
        "Unique per project for all time (a UUID or the sender's own stable id); a resend is a duplicate."))
    project = serializers.SlugField(max_length=63, help_text="The project's slug.")
    resource_type = serializers.SlugField(max_length=50, help_text="A resource type code: vm, storage_gib, network_egress_gib, ...")
    quantity = QuantityField(allow_zero=True, help_text=QUANTITY_HELP)
    timestamp = serializers.DateTimeField(help_text=(
        "When the usage happened, ISO 8601 with a time zone. Refused if more than 5 minutes in the future "
        "or older than USAGE_LATENESS_HOURS (48 h by default). It decides the billing window."))


class UsageBatchSerializer(StrictSerializer):
    events = serializers.ListField(child=UsageEventSerializer(), min_length=1, max_length=MAX_BATCH)


class UsageEventResultSerializer(serializers.Serializer):
    id = serializers.CharField(allow_null=True)
    status = serializers.ChoiceField(choices=["accepted", "duplicate", "rejected"])
    reason = serializers.CharField(required=False, help_text=(
        "When rejected: invalid_event (also a control character in an id, slug or code, or a value the database "
        "cannot store), unknown_project, unknown_resource_type, timestamp_in_future, timestamp_too_old, "
        "window_total_too_large (the event would take its project's usage of that type and window past "
        "1000000000000)"))
    detail = serializers.CharField(required=False)


class UsageBatchResultSerializer(serializers.Serializer):
    accepted = serializers.IntegerField()
    duplicate = serializers.IntegerField()
    rejected = serializers.IntegerField()
    results = UsageEventResultSerializer(many=True, help_text="One per event, in the order sent.")


class UsageEventsView(APIView):
    @extend_schema(
        request=UsageBatchSerializer,
        responses={200: UsageBatchResultSerializer},
        description=(
            "Push up to 1,000 usage events. Each is answered accepted, duplicate (already stored: never counted "
            "twice) or rejected with a reason; the valid events of a batch are taken even when others are "
            "rejected. Platform keys report for any project; a project-scoped key only for its own project. "
            "No Idempotency-Key: event ids make a resend harmless, and a resent batch answers duplicate for "
            "the events stored the first time. " + QUANTITY_HELP
        ),
        examples=[OpenApiExample("One VM-hour quarter", request_only=True, value={"events": [{
            "id": "4f1c8a0e-6d0b-4c55-9d0e-2f1f4a1b9c10", "project": "acme", "resource_type": "vm",
            "quantity": "0.25", "timestamp": "2026-11-22T03:15:00Z"}]})],
    )
    def post(self, request: Request) -> Response:
        user = request.user
        access.require(request, access.USAGE_REPORT)
        # A project key reports for its own project; a platform key or a permitted staff user for any.
        allowed_project_id = user.project_id if isinstance(user, ServicePrincipal) else None
        body = request.data
        if not isinstance(body, dict) or set(body) != {"events"}:
            raise ValidationFailed({"events": ["send {\"events\": [...]} and nothing else"]})
        events = body["events"]
        if not isinstance(events, list) or not events:
            raise ValidationFailed({"events": ["a non-empty list of events"]})
        if len(events) > MAX_BATCH:
            raise ValidationFailed({"events": [f"at most {MAX_BATCH} events per batch"]})
        result = usage_events_ingest(events=events, allowed_project_id=allowed_project_id)
        return Response(result.as_body())
