"""The gRPC admission API end to end: a real server on a free port in this process, real clients over
a socket, the test database committed (the server's threads have their own connections). The answers
are the REST API's, as gRPC statuses with the REST error code in the details and the `error-code`
trailer."""

import json
import logging
import threading
from collections import Counter

import grpc
import pytest
from django.db import connection
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from creditservice.lib.metrics import GRPC_CALL_DURATION, GRPC_CALLS
from creditservice.testing.fixtures import ServiceClient
from creditservice.testing.invariants import assert_books_balance
from creditservice.testing.metrics import sample_value
from quotas.grpc_api.server import SERVICE_NAME, AdmissionServer
from quotas.grpc_api.servicer import pb2, pb2_grpc
from quotas.models import ResourceType
from quotas.tests.helpers import RESERVE
from wallets.tests.factories import ProjectFactory, platform_key, scoped_key

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def server():
    # A transactional test's database was flushed by the one before it: ship the resource type again.
    ResourceType.objects.get_or_create(code="vm", defaults={"display_name": "VM", "unit": "vm"})
    server = AdmissionServer(host="127.0.0.1", port=0, max_workers=16)
    server.start()
    yield server
    server.stop(grace_seconds=5)


@pytest.fixture
def acme():
    return ProjectFactory(slug="acme", balance="100")


@pytest.fixture
def key(acme) -> str:
    return platform_key()


class Client:
    """A stub on its own channel, sending `authorization: Bearer <key>` when given one."""

    def __init__(self, address: str, key: str | None):
        self.channel = grpc.insecure_channel(address)
        self.stub = pb2_grpc.AdmissionStub(self.channel)
        self.metadata = (("authorization", f"Bearer {key}"),) if key else ()

    def call(self, method: str, request):
        """(reply, trailing metadata as a dict)."""
        reply, call = getattr(self.stub, method).with_call(request, metadata=self.metadata, timeout=30)
        return reply, dict(call.trailing_metadata() or ())

    def refusal(self, method: str, request) -> tuple[grpc.StatusCode, dict, str]:
        """The status code, the REST error body (from the status message) and the `error-code` trailer."""
        with pytest.raises(grpc.RpcError) as caught:
            self.call(method, request)
        error = caught.value
        return error.code(), json.loads(error.details()), dict(error.trailing_metadata() or ()).get("error-code")

    def close(self):
        self.channel.close()


@pytest.fixture
def client(server, key):
    client = Client(server.address, key)
    yield client
    client.close()


def reserve_request(**fields):
    return pb2.ReserveRequest(**{"project": "acme", "resource_type": "vm", "quantity": "1", "amount": "5",
                                 "idempotency_key": "k1", **fields})


def test_check_admits_what_the_wallet_covers_and_refuses_more(client):
    allowed, _ = client.call("CheckAdmission", pb2.CheckAdmissionRequest(
        project="acme", resource_type="vm", quantity="1", amount="100"))
    assert (allowed.allowed, allowed.HasField("reason"), allowed.available) == (True, False, "100")
    refused, _ = client.call("CheckAdmission", pb2.CheckAdmissionRequest(
        project="acme", resource_type="vm", quantity="1", amount="100.5"))
    assert (refused.allowed, refused.reason, refused.amount) == (False, "insufficient_credits", "100.5")


def test_a_reservation_beyond_the_wallet_is_failed_precondition_insufficient_credits(client):
    code, body, trailer = client.refusal("Reserve", reserve_request(amount="101"))
    assert code == grpc.StatusCode.FAILED_PRECONDITION
    assert (body["error"], body["available"], trailer) == ("insufficient_credits", "100", "insufficient_credits")


def test_each_call_is_counted_timed_and_logged_in_one_line(client, caplog):
    before = {code: sample_value(GRPC_CALLS, rpc="Reserve", code=code) for code in ("OK", "FAILED_PRECONDITION")}
    timed = sample_value(GRPC_CALL_DURATION, "_count", rpc="Reserve")
    with caplog.at_level(logging.INFO, logger="creditservice.request"):
        client.call("Reserve", reserve_request())
        client.refusal("Reserve", reserve_request(amount="101", idempotency_key="k2"))
    assert sample_value(GRPC_CALLS, rpc="Reserve", code="OK") == before["OK"] + 1
    assert sample_value(GRPC_CALLS, rpc="Reserve", code="FAILED_PRECONDITION") == before["FAILED_PRECONDITION"] + 1
    assert sample_value(GRPC_CALL_DURATION, "_count", rpc="Reserve") == timed + 2
    lines = [r for r in caplog.records if r.name == "creditservice.request" and getattr(r, "rpc", None) == "Reserve"]
    assert [(r.grpc_code, r.error, r.project) for r in lines] == [
        ("OK", None, "acme"), ("FAILED_PRECONDITION", "insufficient_credits", "acme")]
    assert all(r.api_key and len(r.request_id) > 0 for r in lines)


def test_reserve_then_commit_part_charges_only_that_part(client):
    held, _ = client.call("Reserve", reserve_request(ttl_seconds=600))
    assert (held.status, held.amount, held.quantity, held.HasField("committed_amount")) == ("pending", "5", "1", False)
    wallet, _ = client.call("GetWallet", pb2.GetWalletRequest(project="acme"))
    assert (wallet.balance, wallet.reserved, wallet.available) == ("100", "5", "95")

    committed, _ = client.call("Commit", pb2.CommitRequest(reservation_id=held.id, amount="3"))
    assert (committed.status, committed.committed_amount) == ("committed", "3")
    wallet, _ = client.call("GetWallet", pb2.GetWalletRequest(project="acme"))
    assert (wallet.balance, wallet.reserved, wallet.available) == ("97", "0", "97")
    again, _ = client.call("Commit", pb2.CommitRequest(reservation_id=held.id, amount="3"))
    assert again == committed
    fetched, _ = client.call("GetReservation", pb2.GetReservationRequest(reservation_id=held.id))
    assert (fetched.id, fetched.status, fetched.committed_amount) == (held.id, "committed", "3")
    assert_books_balance()


def test_release_gives_the_hold_back_and_a_committed_reservation_is_not_released(client):
    held, _ = client.call("Reserve", reserve_request())
    released, _ = client.call("Release", pb2.ReleaseRequest(reservation_id=held.id))
    assert released.status == "released"
    wallet, _ = client.call("GetWallet", pb2.GetWalletRequest(project="acme"))
    assert (wallet.balance, wallet.available) == ("100", "100")

    other, _ = client.call("Reserve", reserve_request(idempotency_key="k2"))
    client.call("Commit", pb2.CommitRequest(reservation_id=other.id))
    code, body, trailer = client.refusal("Release", pb2.ReleaseRequest(reservation_id=other.id))
    assert (code, body["error"], trailer) == (grpc.StatusCode.ABORTED, "reservation_committed", "reservation_committed")


def test_a_retry_with_the_same_key_and_fields_replays_the_first_reservation(client):
    first, first_trailers = client.call("Reserve", reserve_request())
    second, second_trailers = client.call("Reserve", reserve_request())
    assert second == first
    assert "idempotent-replayed" not in first_trailers and second_trailers["idempotent-replayed"] == "true"
    wallet, _ = client.call("GetWallet", pb2.GetWalletRequest(project="acme"))
    assert wallet.reserved == "5"


def test_the_same_key_with_other_fields_is_refused(client):
    client.call("Reserve", reserve_request())
    code, body, trailer = client.refusal("Reserve", reserve_request(amount="6"))
    assert (code, body["error"], trailer) == (grpc.StatusCode.FAILED_PRECONDITION, "idempotency_key_reused",
                                              "idempotency_key_reused")


def test_a_key_used_over_rest_replays_over_grpc(client, key):
    rest = ServiceClient(key).post_idem(RESERVE, {"project": "acme", "resource_type": "vm", "quantity": "1",
                                                  "amount": "5"}, key="shared")
    assert rest.status_code == 201
    replayed, trailers = client.call("Reserve", reserve_request(idempotency_key="shared"))
    assert (replayed.id, trailers["idempotent-replayed"]) == (rest.json()["id"], "true")


def test_a_reservation_without_a_key_is_invalid(client):
    request = reserve_request()
    request.ClearField("idempotency_key")
    code, body, _ = client.refusal("Reserve", request)
    assert (code, body["error"], list(body["detail"])) == (grpc.StatusCode.INVALID_ARGUMENT, "validation_error",
                                                           ["Idempotency-Key"])


@pytest.mark.parametrize("amount", ["1e3", "-5", "5.1234567", "five", " 5"])
def test_an_amount_outside_the_grammar_is_invalid_argument(client, amount):
    code, body, trailer = client.refusal("Reserve", reserve_request(amount=amount))
    assert (code, body["error"], trailer, list(body["detail"])) == (
        grpc.StatusCode.INVALID_ARGUMENT, "validation_error", "validation_error", ["amount"])


def test_without_a_key_or_with_an_unknown_one_the_call_is_unauthenticated(server, acme):
    for key in (None, "cs_not-a-key"):
        client = Client(server.address, key)
        code, body, trailer = client.refusal("GetWallet", pb2.GetWalletRequest(project="acme"))
        client.close()
        assert (code, body["error"], trailer) == (grpc.StatusCode.UNAUTHENTICATED, "unauthenticated", "unauthenticated")


def test_a_project_key_sees_nothing_of_another_project(server, client):
    other = ProjectFactory(slug="other", balance="100")
    held, _ = client.call("Reserve", reserve_request())
    scoped = Client(server.address, scoped_key(other))
    try:
        for method, request in [
            ("GetWallet", pb2.GetWalletRequest(project="acme")),
            ("Reserve", reserve_request(idempotency_key="theirs")),
            ("CheckAdmission", pb2.CheckAdmissionRequest(project="acme", resource_type="vm", quantity="1", amount="1")),
            ("GetReservation", pb2.GetReservationRequest(reservation_id=held.id)),
            ("Commit", pb2.CommitRequest(reservation_id=held.id)),
            ("Release", pb2.ReleaseRequest(reservation_id=held.id)),
        ]:
            code, body, _ = scoped.refusal(method, request)
            assert (method, code, body["error"]) == (method, grpc.StatusCode.NOT_FOUND, "not_found")
        own, _ = scoped.call("GetWallet", pb2.GetWalletRequest(project="other"))
        assert own.available == "100"
    finally:
        scoped.close()
    fetched, _ = client.call("GetReservation", pb2.GetReservationRequest(reservation_id=held.id))
    assert fetched.status == "pending"


def test_health_says_serving_and_reflection_lists_the_service(server):
    with grpc.insecure_channel(server.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        for service in ("", SERVICE_NAME):
            answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=30)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        answers = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=30)
        names = {service.name for answer in answers for service in answer.list_services_response.service}
    assert SERVICE_NAME == "creditservice.admission.v1.Admission" and SERVICE_NAME in names


def test_racing_reservations_against_room_for_five_let_exactly_five_through(server):
    ProjectFactory(slug="race", balance="5")
    raw_key = platform_key("racer")
    count, start = 12, threading.Barrier(12)
    outcomes: list[str] = []
    lock = threading.Lock()

    def reserve(i: int) -> None:
        client = Client(server.address, raw_key)
        request = reserve_request(project="race", amount="1", idempotency_key=f"race-{i}")
        start.wait()
        try:
            client.call("Reserve", request)
            outcome = "reserved"
        except grpc.RpcError as error:
            outcome = f"{error.code().name} {dict(error.trailing_metadata() or ()).get('error-code')}"
        finally:
            client.close()
            connection.close()
        with lock:
            outcomes.append(outcome)

    threads = [threading.Thread(target=reserve, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert Counter(outcomes) == {"reserved": 5, "FAILED_PRECONDITION insufficient_credits": 7}
    assert_books_balance()


def test_the_call_past_the_keys_rate_limit_is_resource_exhausted_with_retry_after(server, acme, monkeypatch):
    from creditservice.lib import ratelimit
    from wallets.auth import api_key_create

    window_start = 1_800_000_000.0
    monkeypatch.setattr(ratelimit, "clock", lambda: window_start + 30)  # every call in one window
    _, raw_key = api_key_create(name="limited", rate_limit="2/minute")
    client = Client(server.address, raw_key)
    try:
        for _ in range(2):
            client.call("GetWallet", pb2.GetWalletRequest(project="acme"))
        with pytest.raises(grpc.RpcError) as caught:
            client.call("Reserve", reserve_request())
    finally:
        client.close()
    error = caught.value
    trailers = dict(error.trailing_metadata() or ())
    assert (error.code(), json.loads(error.details())["error"]) == (grpc.StatusCode.RESOURCE_EXHAUSTED, "rate_limited")
    assert (trailers["error-code"], trailers["retry-after"]) == ("rate_limited", "30")
    other = Client(server.address, platform_key("other"))
    wallet, _ = other.call("GetWallet", pb2.GetWalletRequest(project="acme"))
    other.close()
    assert wallet.reserved == "0"  # the refused call held nothing


def test_a_database_that_drops_the_call_is_unavailable_with_retry_after(client, monkeypatch):
    from django.db import OperationalError

    from quotas import admission

    def dropped(*args, **kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(admission, "reservation_detail", dropped)
    code, body, trailer = client.refusal("GetReservation", pb2.GetReservationRequest(reservation_id=1))
    assert (code, body["error"], trailer) == (grpc.StatusCode.UNAVAILABLE, "database_unavailable", "database_unavailable")
    assert "server closed" not in json.dumps(body)  # the driver's words stay in the log
