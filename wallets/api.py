"""Service API of the ledger core: thin views over access, selectors and services."""

from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from creditservice.lib.errors import ValidationFailed
from creditservice.lib.pagination import IdCursorPagination
from creditservice.lib.schema import errors

from . import access, idempotency, services
from .models import Project
from .serializers import (
    ProjectCreateSerializer,
    ProjectSerializer,
    TransactionFilterSerializer,
    WalletMovementSerializer,
    transfer_body,
    transfer_page_bodies,
    wallet_body,
)

IDEMPOTENCY_PARAM = OpenApiParameter(
    "Idempotency-Key", location=OpenApiParameter.HEADER, required=True,
    description="A unique key per logical request; a retry with the same key and body replays the first answer.",
)
WALLET_FIELDS = {
    "project": serializers.CharField(), "balance": serializers.CharField(), "reserved": serializers.CharField(),
    "available": serializers.CharField(), "status": serializers.CharField(), "updated_at": serializers.DateTimeField(),
    "burn_rate_per_hour": serializers.CharField(required=False), "runway_hours": serializers.CharField(
        required=False, allow_null=True, help_text="Hours the available credits last at the burn rate; null: no burn."),
    "grants": serializers.DictField(child=serializers.CharField(),
                                    help_text="Spendable credits by grant category: purchased, promotional, granted."),
    "expiring_within_30_days": serializers.CharField(help_text="Of those, what expires within 30 days."),
    "scoped_to_resource_types": serializers.CharField(help_text=(
        "Of those, what applies only to some resource types (the grants' resource_types): a reservation, "
        "usage or gateway call of another type does not count it.")),
}
WALLET_SCHEMA = inline_serializer("Wallet", WALLET_FIELDS)
TRANSFER_SCHEMA = inline_serializer("Transfer", {
    "id": serializers.IntegerField(), "kind": serializers.CharField(), "amount": serializers.CharField(),
    "balance_after": serializers.CharField(), "reason": serializers.CharField(), "description": serializers.CharField(),
    "reference": serializers.CharField(), "created_at": serializers.DateTimeField(),
})
WALLET_MOVEMENT_SCHEMA = inline_serializer("WalletMovement", {**WALLET_FIELDS, "transfer": TRANSFER_SCHEMA})


def validated(serializer_class, data) -> dict:
    serializer = serializer_class(data=data)
    if not serializer.is_valid():
        raise ValidationFailed(serializer.errors)
    return serializer.validated_data


class ProjectListView(APIView):
    @extend_schema(responses=ProjectSerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response(ProjectSerializer(access.visible_projects(request), many=True).data)

    @extend_schema(request=ProjectCreateSerializer, responses={201: ProjectSerializer, **errors(409)})
    def post(self, request: Request) -> Response:
        access.require(request, access.PROJECT_CREATE)
        data = validated(ProjectCreateSerializer, request.data)
        project = services.project_create(slug=data["slug"], name=data["name"])
        return Response(ProjectSerializer(project).data, status=201)


class ProjectDetailView(APIView):
    @extend_schema(responses=ProjectSerializer)
    def get(self, request: Request, slug: str) -> Response:
        return Response(ProjectSerializer(access.project_for_caller(request, slug)).data)


class WalletView(APIView):
    @extend_schema(responses=WALLET_SCHEMA)
    def get(self, request: Request, slug: str) -> Response:
        project = access.project_for_caller(request, slug)
        return Response(wallet_body(Project.objects.select_related("wallet").get(id=project.id)))


class TransferCursorPagination(IdCursorPagination):
    """Newest first; page_size ≤ 200, and a cursor this API did not make is a 400."""


class TransactionListView(APIView):
    @extend_schema(parameters=[TransactionFilterSerializer], responses=inline_serializer("TransactionPage", {
        "next": serializers.URLField(allow_null=True), "previous": serializers.URLField(allow_null=True),
        "results": serializers.ListField(child=serializers.DictField()),
    }))
    def get(self, request: Request, slug: str) -> Response:
        project = access.project_for_caller(request, slug)
        filters = validated(TransactionFilterSerializer, request.query_params.dict())
        transfers = project.transfers.all()
        if "kind" in filters:
            transfers = transfers.filter(kind=filters["kind"])
        if "since" in filters:
            transfers = transfers.filter(created_at__gte=filters["since"])
        if "until" in filters:
            transfers = transfers.filter(created_at__lt=filters["until"])
        paginator = TransferCursorPagination()
        page = paginator.paginate_queryset(transfers, request, view=self)
        return paginator.get_paginated_response(transfer_page_bodies(list(page), project.wallet.id))


class _WalletMovementView(APIView):
    direction = ""

    @extend_schema(request=WalletMovementSerializer, parameters=[IDEMPOTENCY_PARAM],
                   responses={201: WALLET_MOVEMENT_SCHEMA, **errors(409, 422)})
    def post(self, request: Request, slug: str) -> Response:
        project = access.project_for_caller(request, slug)
        access.require(request, access.CREDITS_MOVE)
        data = validated(WalletMovementSerializer, request.data)
        idempotency.require_key(request)
        actor = access.caller_actor(request)
        move = services.wallet_credit if self.direction == "in" else services.wallet_debit

        def operation(effect_key: str) -> tuple[int, dict]:
            transfer = move(project=project, amount=data["amount"], reason=data["reason"], actor=actor,
                            idempotency_key=effect_key)
            body = wallet_body(Project.objects.select_related("wallet").get(id=project.id))
            body["transfer"] = transfer_body(transfer, transfer.credit_account_id if self.direction == "in" else transfer.debit_account_id)
            return 201, body

        return idempotency.run(request, request.data, operation)


class WalletCreditView(_WalletMovementView):
    direction = "in"


@extend_schema_view(post=extend_schema(responses={201: WALLET_MOVEMENT_SCHEMA, **errors(402, 409, 422)}))
class WalletDebitView(_WalletMovementView):
    direction = "out"
