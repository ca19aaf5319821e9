"""Service API of threshold alerts: GET/POST /projects/{slug}/alerts and DELETE /alerts/{id}."""

from django.db import transaction
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from creditservice.lib.errors import NotFound, ValidationFailed
from creditservice.lib.fields import StrictSerializer
from creditservice.lib.schema import errors
from wallets import access, idempotency
from wallets.api import IDEMPOTENCY_PARAM, validated

from .models import ThresholdAlert
from .services import alerts

Metric = ThresholdAlert.Metric


class AlertCreateSerializer(StrictSerializer):
    metric = serializers.ChoiceField(choices=Metric.choices)
    level = serializers.ChoiceField(choices=ThresholdAlert.Level.choices)
    threshold = serializers.CharField(max_length=40, trim_whitespace=False, help_text=(
        "available: credits (a decimal string); runway: whole hours (1 to 8784); budget: whole percent of the "
        "budget's hard limit (1 to 100)."))

    def validate(self, data: dict) -> dict:
        try:
            data["threshold"] = alerts.alert_threshold_parse(metric=data["metric"], text=data["threshold"])
        except ValidationFailed as exc:
            raise serializers.ValidationError(exc.detail) from None
        return data


ALERT_FIELDS = {
    "id": serializers.IntegerField(), "project": serializers.CharField(), "metric": serializers.CharField(),
    "level": serializers.CharField(), "threshold": serializers.CharField(), "unit": serializers.CharField(),
    "state": serializers.CharField(help_text="armed: the next crossing notifies; fired: crossed, until it recovers."),
    "last_value": serializers.CharField(allow_null=True), "changed_at": serializers.DateTimeField(allow_null=True),
}
ALERT_SCHEMA = inline_serializer("ThresholdAlert", ALERT_FIELDS)
ALERT_LIST_SCHEMA = inline_serializer("ThresholdAlertList", {
    "results": inline_serializer("ThresholdAlertListItem", ALERT_FIELDS, many=True)})


class ProjectAlertsView(APIView):
    @extend_schema(responses=ALERT_LIST_SCHEMA)
    def get(self, request: Request, slug: str) -> Response:
        """The project's threshold alerts (at most MAX_ALERTS_PER_PROJECT), with their state."""
        project = access.project_for_caller(request, slug)
        rows = ThresholdAlert.objects.filter(project=project)[:alerts.MAX_ALERTS_PER_PROJECT]
        return Response({"results": [alerts.alert_body(alert, project.slug) for alert in rows]})

    @extend_schema(request=AlertCreateSerializer, parameters=[IDEMPOTENCY_PARAM],
                   responses={201: ALERT_SCHEMA, **errors(409, 422)})
    def post(self, request: Request, slug: str) -> Response:
        """Add an alert: notified once (email to the owners, webhook) when the metric crosses, once when it recovers."""
        project = access.project_for_caller(request, slug)
        access.require(request, access.ALERT_CREATE)
        data = validated(AlertCreateSerializer, request.data)
        idempotency.require_key(request)

        def operation(effect_key: str) -> tuple[int, dict]:
            alert = alerts.alert_create(project=project, metric=data["metric"], level=data["level"],
                                        threshold=data["threshold"])
            return 201, alerts.alert_body(alert, project.slug)

        return idempotency.run(request, request.data, operation)


class AlertDetailView(APIView):
    @extend_schema(responses={204: None, **errors(404)})
    def delete(self, request: Request, alert_id: int) -> Response:
        """Remove an alert (of a project the caller sees; 404 otherwise)."""
        alert = ThresholdAlert.objects.filter(id=alert_id, project__in=access.visible_projects(request)).first()
        if alert is None:
            raise NotFound(f"no alert {alert_id}")
        access.require(request, access.ALERT_DELETE)
        with transaction.atomic():
            alerts.alert_delete(alert=alert)
        return Response(status=204)
