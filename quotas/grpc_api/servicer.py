"""The Admission service: each method turns its request message into the REST body, calls the same
function the REST view calls (quotas/admission.py, wallets/access.py), and turns the REST answer back
into a message. Field names are the REST JSON's, so the translation is by name."""

from typing import Any

import grpc
from django.urls import reverse
from google.protobuf import json_format
from google.protobuf.message import Message

from creditservice.lib.errors import ValidationFailed
from wallets import access
from wallets.models import Project
from wallets.serializers import wallet_body

from .. import admission
from .build import modules
from .calls import serve

pb2, pb2_grpc = modules()
REPLAYED_KEY = "idempotent-replayed"


def body_of(message: Message, *, leave_out: tuple[str, ...] = ()) -> dict[str, Any]:
    """The JSON body a REST client would send: the fields that were set, by name (unset = not sent)."""
    return {f.name: getattr(message, f.name) for f in message.DESCRIPTOR.fields
            if f.name not in leave_out and message.HasField(f.name)}


def _without_nulls(body: Any) -> Any:
    if isinstance(body, dict):
        return {name: _without_nulls(value) for name, value in body.items() if value is not None}
    return body


def reply(message_class: type[Message], body: dict) -> Message:
    """A REST answer as a message: null is unset; a field REST answers with that the proto lacks is left out."""
    return json_format.ParseDict(_without_nulls(body), message_class(), ignore_unknown_fields=True)


def _optional(message: Message, name: str) -> Any:
    return getattr(message, name) if message.HasField(name) else None


# The REST path each call stands for. Only Reserve's matters: it is part of the idempotency fingerprint, so a
# key used over REST and retried over gRPC (or back) with the same fields replays the same reservation.
class AdmissionServicer(pb2_grpc.AdmissionServicer):
    def CheckAdmission(self, request, context: grpc.ServicerContext):
        return serve(context, rpc="CheckAdmission", method="POST", path=reverse("admission-check"), idempotency_key=None,
                     call=lambda caller: reply(pb2.CheckAdmissionReply,
                                               admission.admission_check(caller, body_of(request))))

    def Reserve(self, request, context: grpc.ServicerContext):
        def call(caller):
            result = admission.reservation_create(caller, body_of(request, leave_out=("idempotency_key",)))
            if not result.created:
                context.set_trailing_metadata(((REPLAYED_KEY, "true"),))
            return reply(pb2.Reservation, result.body)

        return serve(context, rpc="Reserve", method="POST", path=reverse("reservation-create"),
                     idempotency_key=_optional(request, "idempotency_key"), call=call)

    def Commit(self, request, context: grpc.ServicerContext):
        # idempotency_key is accepted and not used: commit is idempotent by the reservation's state.
        reservation_id = request.reservation_id
        return serve(context, rpc="Commit", method="POST", path="/api/v1/reservations/{id}/commit",
                     idempotency_key=None, call=lambda caller: reply(pb2.Reservation, admission.reservation_commit(
                         caller, reservation_id, body_of(request, leave_out=("reservation_id", "idempotency_key")))))

    def Release(self, request, context: grpc.ServicerContext):
        reservation_id = request.reservation_id
        return serve(context, rpc="Release", method="POST", path="/api/v1/reservations/{id}/release",
                     idempotency_key=None, call=lambda caller: reply(
                         pb2.Reservation, admission.reservation_release(caller, reservation_id, {})))

    def GetReservation(self, request, context: grpc.ServicerContext):
        reservation_id = request.reservation_id
        return serve(context, rpc="GetReservation", method="GET", path="/api/v1/reservations/{id}",
                     idempotency_key=None, call=lambda caller: reply(
                         pb2.Reservation, admission.reservation_detail(caller, reservation_id)))

    def GetWallet(self, request, context: grpc.ServicerContext):
        def call(caller):
            if not request.HasField("project"):
                raise ValidationFailed({"project": ["This field is required."]})
            project = access.project_for_caller(caller, request.project)
            return reply(pb2.Wallet, wallet_body(Project.objects.select_related("wallet").get(id=project.id)))

        return serve(context, rpc="GetWallet", method="GET", path="/api/v1/projects/{project}/wallet", idempotency_key=None, call=call)
