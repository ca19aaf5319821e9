"""Service API of billing: a project's charges, each with what explains it."""

from django.conf import settings
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from creditservice.lib.fields import StrictSerializer
from creditservice.lib.money import format_amount, format_micros, format_rate
from metering.windows import is_window_start, window_start_of
from wallets import access
from wallets.api import validated

from . import selectors
from .models import Charge

MAX_CHARGES = 500


class ChargeFilterSerializer(StrictSerializer):
    window_start = serializers.DateTimeField(required=False, help_text=(
        "The start of one billing window: a multiple of BILLING_WINDOW_MINUTES (60 by default) from the UTC "
        "epoch, so with 60-minute windows on the hour."))
    since = serializers.DateTimeField(required=False, help_text="Windows starting at or after this moment.")
    until = serializers.DateTimeField(required=False, help_text="Windows starting before this moment.")

    def validate_window_start(self, value):
        # A moment inside a window matches no charge: say so rather than answer an empty list.
        if not is_window_start(value):
            minutes = settings.BILLING_WINDOW_MINUTES
            raise serializers.ValidationError(
                f"not the start of a billing window: windows are {minutes} minutes long from the UTC epoch "
                f"(00:00 on 1 January 1970), so this moment's window starts at {_iso(window_start_of(value))}")
        return value


def _iso(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def charge_body(charge: Charge, records: dict) -> dict:
    return {
        "id": charge.id,
        "resource_type": charge.resource_type.code,
        "window_start": _iso(charge.window_start),
        "window_end": _iso(charge.window_end),
        "kind": charge.kind,
        "quantity": format_micros(charge.quantity),
        "unit": charge.unit,
        "window_quantity": format_micros(charge.window_quantity),
        "previously_charged_quantity": format_micros(charge.previously_charged_quantity),
        "rate": format_rate(charge.rate),
        "amount": format_amount(charge.amount),
        "price": {
            "id": charge.price_id, "unit_price": format_rate(charge.price.unit_price), "per": charge.price.per,
            "effective_from": _iso(charge.price.effective_from),
        },
        "price_segments": charge.price_breakdown,
        "usage_records": [
            {"id": r.id, "source": r.source, "source_reference": r.source_reference,
             "quantity": format_micros(r.quantity), "updated_at": _iso(r.updated_at)}
            for r in (records.get(record_id) for record_id in charge.usage_record_ids) if r is not None
        ],
        "transfer_id": charge.transfer_id,
        "created_at": _iso(charge.created_at),
    }


class ChargeListView(APIView):
    @extend_schema(parameters=[ChargeFilterSerializer], responses=inline_serializer("ChargeList", {
        "results": serializers.ListField(child=serializers.DictField()), "truncated": serializers.BooleanField(),
    }))
    def get(self, request: Request, slug: str) -> Response:
        """The charges of a project (newest windows first, at most 500), with usage records, price and rate."""
        project = access.project_for_caller(request, slug)
        filters = validated(ChargeFilterSerializer, request.query_params.dict())
        charges = list(selectors.charges_for_project(project=project, **filters)[:MAX_CHARGES + 1])
        truncated = len(charges) > MAX_CHARGES
        charges = charges[:MAX_CHARGES]
        records = selectors.usage_records_of(charges)
        return Response({"results": [charge_body(c, records) for c in charges], "truncated": truncated})
