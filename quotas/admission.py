"""The admission operations as a caller asks for them, for both doors: the REST views (quotas/api.py)
and the gRPC servicer (quotas/grpc_api/). Who may see which project, the input rules, the permissions
and the idempotency are implemented once, here and in what this calls; the doors only translate.

`request` is DRF's Request, or the gRPC door's stand-in for it: anything with `user` (the caller: a
ServicePrincipal or a Django user), `method`, `path` and `headers` (for the Idempotency-Key and the
request fingerprint, wallets/idempotency.py).
"""

from typing import Any

from django.utils import timezone

from creditservice.lib import log_context
from creditservice.lib.errors import NotFound, ValidationFailed
from wallets import access, idempotency
from wallets.api import validated
from wallets.auth import ServicePrincipal

from . import metrics, selectors, services
from .models import Reservation, ResourceType
from .selectors import ProjectRef
from .serializers import AdmissionSerializer, ReservationReleaseSerializer, parse_commit, parse_reservation


def project_for_caller(request: Any, slug: str) -> ProjectRef:
    """The project if the caller may see it, else 404 (its existence is not revealed)."""
    log_context.note_project(slug)  # the request's log line names the project it asked for
    user = request.user
    if isinstance(user, ServicePrincipal):
        project = selectors.project_ref(slug=slug)
        if project is None or (not user.is_platform and project.id != user.project_id):
            raise NotFound(f"no project {slug!r}")
        return project
    return selectors.project_ref(project_id=access.project_id_for_caller(request, slug))


def reservation_scope(request: Any) -> int | None:
    """The only project whose reservations a scoped key may touch; None: no restriction by id."""
    user = request.user
    return user.project_id if isinstance(user, ServicePrincipal) and not user.is_platform else None


def resource_type_id(code: str) -> int:
    type_id = selectors.resource_type_id(code)
    if type_id is None:
        raise ValidationFailed({"resource_type": [selectors.unknown_resource_type(code)]})
    return type_id


def admission_check(request: Any, body: Any) -> dict:
    """Would this reservation be admitted now? Writes nothing; the answer of POST /admission/check."""
    data = validated(AdmissionSerializer, body)
    project = project_for_caller(request, data["project"])
    type_id = resource_type_id(data["resource_type"])
    if "amount" in data:
        amount = data["amount"]
    else:
        amount = services.hold_for_min_runtime(hourly_cost=data["hourly_cost"], project=project)
    now = timezone.now()
    # The reservation it asks about would hold for the default TTL: credits expiring before then do not count.
    decision = selectors.admission_check(project=project, resource_type=ResourceType.objects.get(id=type_id),
                                         quantity=data["quantity"], amount=amount, now=now,
                                         until=now + services.reservation_ttl(None))
    metrics.admission_checked(decision["reason"])
    return decision


def reservation_create(request: Any, body: Any) -> services.ReservationResult:
    """Hold credits and quota (POST /reservations). The Idempotency-Key is stored on the reservation
    itself: a retry gets the first answer (created=False), even while the first is still running (it waits)."""
    data = parse_reservation(body)
    log_context.note_project(data["project"])
    key = idempotency.require_key(request)
    type_id = resource_type_id(data["resource_type"])
    user = request.user
    common = {
        "resource_type": (type_id, data["resource_type"]), "quantity": data["quantity"],
        "ttl_seconds": data.get("ttl_seconds"), "idempotency_scope": access.caller_actor(request),
        "idempotency_key": key, "fingerprint": idempotency.fingerprint(request, body),
        "actor": access.caller_actor(request),
    }
    if isinstance(user, ServicePrincipal):
        # The project by slug, as the key allows (a scoped key only its own).
        return services.reservation_create_by_slug(
            slug=data["project"], scope_project_id=None if user.is_platform else user.project_id,
            amount=data.get("amount"), hourly_cost=data.get("hourly_cost"), **common,
        )
    project = project_for_caller(request, data["project"])
    access.require(request, access.RESERVATION_CREATE)
    amount = data["amount"] if "amount" in data else services.hold_for_min_runtime(
        hourly_cost=data["hourly_cost"], project=project)
    return services.reservation_create(project=project, amount=amount, **common)


def visible_reservation(request: Any, reservation_id: int) -> Reservation:
    queryset = Reservation.objects.select_related("project", "resource_type").filter(id=reservation_id)
    user = request.user
    if isinstance(user, ServicePrincipal):
        if not user.is_platform:
            queryset = queryset.filter(project_id=user.project_id)
    else:
        queryset = queryset.filter(project__in=access.visible_projects(request))
    reservation = queryset.first()
    if reservation is None:
        raise NotFound(f"no reservation {reservation_id}")
    return reservation


def reservation_detail(request: Any, reservation_id: int) -> dict:
    return selectors.body_of(visible_reservation(request, reservation_id), timezone.now())


def reservation_commit(request: Any, reservation_id: int, body: Any) -> dict:
    """Charge the hold (all of it, or `amount` ≤ held); idempotent by state, so no Idempotency-Key is needed."""
    amount = parse_commit(body)
    access.require(request, access.RESERVATION_SETTLE)
    body = services.reservation_commit(reservation_id=reservation_id, amount=amount,
                                       project_id=reservation_scope(request), actor=access.caller_actor(request))
    log_context.note_project(body["project"])  # the request's log line names the reservation's project
    return body


def reservation_release(request: Any, reservation_id: int, body: Any) -> dict:
    """Give the hold back; idempotent by state."""
    validated(ReservationReleaseSerializer, body or {})
    access.require(request, access.RESERVATION_SETTLE)
    body = services.reservation_release(reservation_id=reservation_id, project_id=reservation_scope(request))
    log_context.note_project(body["project"])
    return body
