"""GET /projects/{slug}/statements/{YYYY-MM}: a project's monthly statement, as JSON or (?format=csv) CSV."""

import csv
import io

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from creditservice.lib.csv_cells import spreadsheet_safe
from creditservice.lib.fields import StrictSerializer
from creditservice.lib.money import format_amount
from wallets import access
from wallets.api import validated

from .statements import Statement, project_statement, statement_month

CSV_COLUMNS = ["kind", "resource_type", "description", "amount", "count"]


def _iso(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def statement_body(statement: Statement) -> dict:
    return {
        "project": statement.project.slug,
        "month": statement.month.label,
        "period_start": _iso(statement.month.start),
        "period_end": _iso(statement.month.end),
        "to_date": statement.to_date,
        "opening_balance": format_amount(statement.opening_balance),
        "closing_balance": format_amount(statement.closing_balance),
        "lines": [{"kind": line.kind, "resource_type": line.resource_type, "description": line.description,
                   "amount": format_amount(line.amount), "count": line.count} for line in statement.lines],
    }


def statement_csv(body: dict) -> str:
    """The same lines as the JSON, between an opening and a closing row; every cell spreadsheet-safe."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    rows = [["opening_balance", "", f"Opening balance {body['month']}", body["opening_balance"], ""],
            *([line["kind"], line["resource_type"] or "", line["description"], line["amount"], line["count"]]
              for line in body["lines"]),
            ["closing_balance", "", f"Closing balance {body['month']}" + (" (to date)" if body["to_date"] else ""),
             body["closing_balance"], ""]]
    for row in rows:
        writer.writerow([spreadsheet_safe(str(cell)) for cell in row])
    return out.getvalue()


class StatementCSVRenderer(BaseRenderer):
    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None) -> bytes:
        return statement_csv(data).encode("utf-8")


class FormatParameterNegotiation(BaseContentNegotiation):
    """CSV when ?format=csv, JSON otherwise (the Accept header aside): one rule a client can see in a link;
    a bad format is the query serializer's 400, not DRF's 404."""

    def select_parser(self, request, parsers):
        return parsers[0] if parsers else None

    def select_renderer(self, request, renderers, format_suffix=None):
        wanted = "csv" if request.query_params.get("format") == "csv" else "json"
        renderer = next(r for r in renderers if r.format == wanted)
        return renderer, renderer.media_type


class StatementQuerySerializer(StrictSerializer):
    format = serializers.ChoiceField(choices=["json", "csv"], required=False,
                                     help_text="csv: the statement as a CSV attachment (text/csv).")


LINE_SCHEMA = inline_serializer("StatementLine", {
    "kind": serializers.CharField(help_text="top_up, grant, staff_credit, staff_debit, usage, credit_back, "
                                            "reservation_commit, gateway_charge, expiry, refund, reversal or other"),
    "resource_type": serializers.CharField(allow_null=True),
    "description": serializers.CharField(),
    "amount": serializers.CharField(help_text="Credits, signed: positive into the wallet."),
    "count": serializers.IntegerField(help_text="Transfers in this line."),
})
STATEMENT_SCHEMA = inline_serializer("Statement", {
    "project": serializers.CharField(), "month": serializers.CharField(),
    "period_start": serializers.DateTimeField(), "period_end": serializers.DateTimeField(),
    "to_date": serializers.BooleanField(help_text="The current month: the statement so far."),
    "opening_balance": serializers.CharField(), "closing_balance": serializers.CharField(),
    "lines": serializers.ListField(child=LINE_SCHEMA),
})


class StatementView(APIView):
    renderer_classes = [JSONRenderer, StatementCSVRenderer]
    content_negotiation_class = FormatParameterNegotiation

    @extend_schema(
        parameters=[StatementQuerySerializer,
                    OpenApiParameter("month", OpenApiTypes.STR, OpenApiParameter.PATH, pattern=r"^[0-9]{4}-[0-9]{2}$",
                                     description="A calendar month (UTC), YYYY-MM; not before the project's first "
                                                 "month, not after the current one.")],
        responses={(200, "application/json"): STATEMENT_SCHEMA, (200, "text/csv"): OpenApiTypes.STR},
    )
    def get(self, request: Request, slug: str, month: str) -> Response:
        """A project's statement for one calendar month (UTC): opening balance, the month's movements by kind
        (usage, credit-backs, reservation commits and gateway charges by resource type) and closing balance;
        opening + lines = closing, exactly. The current month is the statement to date."""
        project = access.project_for_caller(request, slug)
        query = validated(StatementQuerySerializer, request.query_params.dict())
        body = statement_body(project_statement(project=project, month=statement_month(month, project=project)))
        response = Response(body)
        if query.get("format") == "csv":
            response["Content-Disposition"] = f'attachment; filename="statement-{project.slug}-{body["month"]}.csv"'
        return response

    def finalize_response(self, request, response, *args, **kwargs):
        # A refusal is JSON in the error shape, whatever format was asked for.
        if response.status_code >= 400:
            request.accepted_renderer = JSONRenderer()
            request.accepted_media_type = JSONRenderer.media_type
        return super().finalize_response(request, response, *args, **kwargs)
