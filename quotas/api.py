"""Admission API: thin views over selectors and services.

Who may do what: any caller that sees the project may read (project-scoped keys see only their
project; another project's objects are 404). Reserve, commit and release need a service key (platform
or the project's own) or a staff user with the reservation permissions. Quota limits, budgets and the
release of quota usage are for platform keys and staff with quotas.change_quota / change_budget only:
lowering `used` raises what the project may hold, so a project's own key releasing usage would let it
lift its own quota. The permissions are checked in one place, wallets/access.py.
"""

from django.utils import timezone
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from creditservice.lib.errors import NotFound
from creditservice.lib.pagination import IdCursorPagination
from creditservice.lib.schema import errors
from wallets import access, idempotency
from wallets.api import IDEMPOTENCY_PARAM, validated
from wallets.service_calls import Answer, lean_post

from . import admission, selectors, services
from .models import Reservation, ResourceType
from .serializers import (
    AdmissionSerializer,
    BudgetSerializer,
    QuotaLimitSerializer,
    QuotaReleaseSerializer,
    ReservationCommitSerializer,
    ReservationCreateSerializer,
    ReservationFilterSerializer,
)

OPTIONAL_IDEMPOTENCY_PARAM = OpenApiParameter(
    "Idempotency-Key", location=OpenApiParameter.HEADER, required=False,
    description="Accepted and not needed: commit and release are idempotent by the reservation's state.",
)
QUOTA_SCHEMA = inline_serializer("Quota", {
    "project": serializers.CharField(), "resource_type": serializers.CharField(), "unit": serializers.CharField(),
    "limit": serializers.CharField(allow_null=True, help_text="null: no limit"), "used": serializers.CharField(),
    "reserved": serializers.CharField(), "available": serializers.CharField(allow_null=True),
    "is_default": serializers.BooleanField(help_text="The project has no quota of its own: the staff default applies."),
})
BUDGET_SCHEMA = inline_serializer("Budget", {
    "project": serializers.CharField(), "hard_limit": serializers.CharField(allow_null=True),
    "soft_limit": serializers.CharField(allow_null=True), "spent": serializers.CharField(allow_null=True),
    "remaining": serializers.CharField(allow_null=True), "soft_limit_reached": serializers.BooleanField(),
    "period_start": serializers.DateTimeField(allow_null=True), "period_end": serializers.DateTimeField(allow_null=True),
})
RESERVATION_SCHEMA = inline_serializer("Reservation", {
    "id": serializers.IntegerField(), "project": serializers.CharField(), "resource_type": serializers.CharField(),
    "quantity": serializers.CharField(), "amount": serializers.CharField(), "status": serializers.CharField(),
    "expires_at": serializers.DateTimeField(), "committed_amount": serializers.CharField(allow_null=True),
    "created_at": serializers.DateTimeField(), "ended_at": serializers.DateTimeField(allow_null=True),
})


# The rules behind these views are in quotas/admission.py, which the gRPC door calls as well.
_project = admission.project_for_caller


def _resource_type(code: str) -> ResourceType:
    resource_type = ResourceType.objects.filter(code=code).first()
    if resource_type is None:
        raise NotFound(selectors.unknown_resource_type(code))
    return resource_type


class AdmissionCheckView(APIView):
    @extend_schema(request=AdmissionSerializer, responses={**errors(422), 200: inline_serializer("AdmissionCheck", {
        "allowed": serializers.BooleanField(), "reason": serializers.CharField(allow_null=True),
        "available": serializers.CharField(), "quota": serializers.DictField(), "budget": serializers.DictField(allow_null=True),
    })})
    def post(self, request: Request) -> Response:
        """Would this reservation be admitted now? Writes nothing."""
        return Response(admission.admission_check(request, request.data))


class ReservationCreateView(APIView):
    @extend_schema(request=ReservationCreateSerializer, parameters=[IDEMPOTENCY_PARAM],
                   responses={201: RESERVATION_SCHEMA, **errors(402, 409, 422)})
    def post(self, request: Request) -> Response:
        """Hold credits and quota. The Idempotency-Key is stored on the reservation itself: a retry gets
        the first answer (201, Idempotent-Replayed: true), even while the first is still running (it waits)."""
        status, body, headers = reserve(request, request.data)
        return Response(body, status=status, headers=headers)


def reserve(request, body) -> Answer:
    """POST /reservations, for the DRF view and the lean one (wallets/service_calls.py)."""
    result = admission.reservation_create(request, body)
    return 201, result.body, {} if result.created else {"Idempotent-Replayed": "true"}


class ReservationDetailView(APIView):
    @extend_schema(responses=RESERVATION_SCHEMA)
    def get(self, request: Request, reservation_id: int) -> Response:
        return Response(admission.reservation_detail(request, reservation_id))


class ReservationCommitView(APIView):
    @extend_schema(request=ReservationCommitSerializer, parameters=[OPTIONAL_IDEMPOTENCY_PARAM],
                   responses={200: RESERVATION_SCHEMA, **errors(409, 422)})
    def post(self, request: Request, reservation_id: int) -> Response:
        """Charge the hold (all of it, or `amount` ≤ held) and turn the quota hold into usage.

        Idempotent by state, so no Idempotency-Key is needed (one is accepted and ignored): a repeated
        commit returns the same answer; 409 reservation_released / reservation_expired /
        reservation_committed (another amount) otherwise."""
        status, body, headers = commit(request, request.data, reservation_id=reservation_id)
        return Response(body, status=status, headers=headers)


def commit(request, body, *, reservation_id: int) -> Answer:
    """POST /reservations/{id}/commit, for the DRF view and the lean one (wallets/service_calls.py)."""
    return 200, admission.reservation_commit(request, reservation_id, body), {}


class ReservationReleaseView(APIView):
    @extend_schema(request=None, parameters=[OPTIONAL_IDEMPOTENCY_PARAM], responses={200: RESERVATION_SCHEMA, **errors(409)})
    def post(self, request: Request, reservation_id: int) -> Response:
        """Give the hold back. Idempotent by state (a repeated release returns the same answer; an
        Idempotency-Key is accepted and ignored); 409 reservation_committed / reservation_expired otherwise."""
        return Response(admission.reservation_release(request, reservation_id, request.data))


class ReservationCursorPagination(IdCursorPagination):
    """Newest first; page_size ≤ 200, and a cursor this API did not make is a 400."""


class ProjectReservationsView(APIView):
    @extend_schema(parameters=[ReservationFilterSerializer], responses=inline_serializer("ReservationPage", {
        "next": serializers.URLField(allow_null=True), "previous": serializers.URLField(allow_null=True),
        "results": serializers.ListField(child=serializers.DictField()),
    }))
    def get(self, request: Request, slug: str) -> Response:
        project = _project(request, slug)
        filters = validated(ReservationFilterSerializer, request.query_params.dict())
        now = timezone.now()
        reservations = Reservation.objects.filter(project_id=project.id).select_related("project", "resource_type")
        if "status" in filters:
            reservations = selectors.reservations_with_status(reservations, filters["status"], now)
        paginator = ReservationCursorPagination()
        page = paginator.paginate_queryset(reservations, request, view=self)
        return paginator.get_paginated_response([selectors.body_of(r, now) for r in page])


class QuotaListView(APIView):
    @extend_schema(responses=type(QUOTA_SCHEMA)(many=True))
    def get(self, request: Request, slug: str) -> Response:
        project = _project(request, slug)
        return Response([row.as_body(project.slug) for row in selectors.project_quotas(project.id)])


class QuotaDetailView(APIView):
    @extend_schema(responses=QUOTA_SCHEMA)
    def get(self, request: Request, slug: str, resource_type: str) -> Response:
        project = _project(request, slug)
        row = selectors.quota_row(project.id, _resource_type(resource_type), timezone.now())
        return Response(row.as_body(project.slug))

    @extend_schema(request=QuotaLimitSerializer, responses=QUOTA_SCHEMA)
    def put(self, request: Request, slug: str, resource_type: str) -> Response:
        """Set the limit (a decimal string) or remove it (null). Platform keys and staff only."""
        project = _project(request, slug)
        access.require(request, access.QUOTA_SET)
        data = validated(QuotaLimitSerializer, request.data)
        kind = _resource_type(resource_type)
        services.quota_set_limit(project_id=project.id, resource_type=kind, limit=data["limit"])
        return Response(selectors.quota_row(project.id, kind, timezone.now()).as_body(project.slug))


class QuotaReleaseView(APIView):
    @extend_schema(request=QuotaReleaseSerializer, parameters=[IDEMPOTENCY_PARAM],
                   responses={200: QUOTA_SCHEMA, **errors(409, 422)})
    def post(self, request: Request, slug: str, resource_type: str) -> Response:
        """A resource was deleted: used -= quantity, never below zero. Needs an Idempotency-Key, since
        repeating it would release twice. Platform keys and staff only (403 forbidden otherwise): the
        platform that deleted the resource says so; a project-scoped key could otherwise lower its own
        usage and escape its quota."""
        project = _project(request, slug)
        access.require(request, access.QUOTA_RELEASE)
        data = validated(QuotaReleaseSerializer, request.data)
        kind = _resource_type(resource_type)

        def operation(effect_key: str) -> tuple[int, dict]:
            services.quota_release_usage(project_id=project.id, resource_type=kind, quantity=data["quantity"])
            return 200, selectors.quota_row(project.id, kind, timezone.now()).as_body(project.slug)

        return idempotency.run(request, request.data, operation)


class BudgetView(APIView):
    @extend_schema(responses=BUDGET_SCHEMA)
    def get(self, request: Request, slug: str) -> Response:
        project = _project(request, slug)
        return Response(selectors.budget_body(project.slug, selectors.budget_status(project.id)))

    @extend_schema(request=BudgetSerializer, responses=BUDGET_SCHEMA)
    def put(self, request: Request, slug: str) -> Response:
        """Set the monthly budget (hard_limit, optional soft_limit) or remove it (hard_limit null)."""
        project = _project(request, slug)
        access.require(request, access.BUDGET_SET)
        data = validated(BudgetSerializer, request.data)
        services.budget_set(project_id=project.id, hard_limit=data["hard_limit"], soft_limit=data.get("soft_limit"))
        return Response(selectors.budget_body(project.slug, selectors.budget_status(project.id)))


# The two hot paths: an API key's reserve and commit skip DRF's dispatch (wallets/service_calls.py).
reservation_create_view = lean_post(ReservationCreateView, reserve)
reservation_commit_view = lean_post(ReservationCommitView, commit)
