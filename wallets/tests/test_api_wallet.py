"""POST /projects/{slug}/wallet/credit and /debit, GET /wallet: money moves once, errors write nothing."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from creditservice.testing.fixtures import ServiceClient
from wallets.models import IdempotencyRecord, Transfer
from wallets.selectors import ledger_check
from wallets.tests.factories import ProjectFactory, member, scoped_key

CREDIT = "/api/v1/projects/acme/wallet/credit"
DEBIT = "/api/v1/projects/acme/wallet/debit"


def wallet(client, slug="acme"):
    return client.get(f"/api/v1/projects/{slug}/wallet").json()


def test_it_shows_the_wallet(platform, project):
    body = wallet(platform)
    assert body["project"] == "acme"
    assert (body["balance"], body["reserved"], body["available"], body["status"]) == ("100", "0", "100", "active")


def test_credit_adds_exactly_and_records_one_transfer(platform, project):
    response = platform.post_idem(CREDIT, {"amount": "12.000001", "reason": "goodwill"})
    assert response.status_code == 201, response.json()
    assert response.json()["balance"] == "112.000001"
    assert response.json()["transfer"]["amount"] == "12.000001"
    assert wallet(platform)["available"] == "112.000001"
    assert ledger_check().ok


def test_debit_takes_credits(platform, project):
    response = platform.post_idem(DEBIT, {"amount": "0.5", "reason": "manual charge"})
    assert response.status_code == 201
    assert wallet(platform)["balance"] == "99.5"
    assert response.json()["transfer"]["amount"] == "-0.5"


def test_debit_beyond_available_is_refused_and_writes_nothing(platform, project):
    before = Transfer.objects.count()
    response = platform.post_idem(DEBIT, {"amount": "100.000001", "reason": "too much"}, key="k1")
    assert response.status_code == 402
    assert response.json()["error"] == "insufficient_credits"
    assert Transfer.objects.count() == before
    assert wallet(platform)["balance"] == "100"
    assert not IdempotencyRecord.objects.filter(key="k1").exists()


def test_replay_returns_the_first_answer_and_moves_nothing(platform, project):
    first = platform.post_idem(CREDIT, {"amount": "5", "reason": "r"}, key="same")
    again = platform.post_idem(CREDIT, {"amount": "5", "reason": "r"}, key="same")
    assert again.status_code == first.status_code == 201
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert wallet(platform)["balance"] == "105"


def test_same_key_with_another_body_is_422(platform, project):
    platform.post_idem(CREDIT, {"amount": "5", "reason": "r"}, key="same")
    response = platform.post_idem(CREDIT, {"amount": "6", "reason": "r"}, key="same")
    assert response.status_code == 422
    assert response.json()["error"] == "idempotency_key_reused"
    assert wallet(platform)["balance"] == "105"


def test_a_retry_while_the_first_is_in_flight_is_409(platform, project):
    from django.utils import timezone

    from wallets.idempotency import fingerprint

    # The first request has claimed the key and not finished (its claim is committed, its effect is not).
    body = {"amount": "5", "reason": "r"}

    class _Req:
        method = "POST"
        path = CREDIT

    key_id = platform._credentials["HTTP_AUTHORIZATION"]
    assert key_id
    from wallets.models import ApiKey

    scope = f"api_key:{ApiKey.objects.get().id}"
    IdempotencyRecord.objects.create(scope=scope, key="busy", fingerprint=fingerprint(_Req, body),
                                     locked_at=timezone.now(), created_at=timezone.now())
    response = platform.post_idem(CREDIT, body, key="busy")
    assert response.status_code == 409
    assert response.json()["error"] == "idempotency_in_progress"
    assert wallet(platform)["balance"] == "100"


def test_keys_are_per_client(platform, project, db):
    other = ServiceClient(__import__("wallets.tests.factories", fromlist=["platform_key"]).platform_key("other"))
    platform.post_idem(CREDIT, {"amount": "5", "reason": "r"}, key="shared")
    response = other.post_idem(CREDIT, {"amount": "7", "reason": "r"}, key="shared")
    assert response.status_code == 201
    assert wallet(platform)["balance"] == "112"


def test_the_idempotency_key_is_required(platform, project):
    response = platform.post(CREDIT, {"amount": "5", "reason": "r"}, format="json")
    assert response.status_code == 400
    assert response.json()["error"] == "validation_error"
    assert "Idempotency-Key" in response.json()["detail"]


@pytest.mark.parametrize("body,field", [
    ({"amount": "-1", "reason": "r"}, "amount"),
    ({"amount": "0", "reason": "r"}, "amount"),
    ({"amount": "NaN", "reason": "r"}, "amount"),
    ({"amount": "Infinity", "reason": "r"}, "amount"),
    ({"amount": "0.0000001", "reason": "r"}, "amount"),
    ({"amount": "1.0000000000001", "reason": "r"}, "amount"),
    ({"amount": "1e40", "reason": "r"}, "amount"),
    ({"amount": 1.5, "reason": "r"}, "amount"),
    ({"amount": True, "reason": "r"}, "amount"),
    ({"amount": ["1"], "reason": "r"}, "amount"),
    ({"amount": "5"}, "reason"),
    ({"amount": "5", "reason": "r", "amout": "1"}, "amout"),
    ({"reason": "r"}, "amount"),
])
def test_bad_input_is_a_400_that_writes_nothing(platform, project, body, field):
    before = (Transfer.objects.count(), IdempotencyRecord.objects.count())
    response = platform.post_idem(CREDIT, body)
    assert response.status_code == 400, response.json()
    assert response.json()["error"] == "validation_error"
    assert field in response.json()["detail"]
    assert (Transfer.objects.count(), IdempotencyRecord.objects.count()) == before


def test_malformed_json_is_a_400_in_the_error_shape(platform, project):
    response = platform.post(CREDIT, "{not json", content_type="application/json", HTTP_IDEMPOTENCY_KEY="x")
    assert response.status_code == 400
    assert response.json()["error"] == "validation_error"


def test_a_scoped_key_cannot_move_credits(project):
    client = ServiceClient(scoped_key(project))
    response = client.post_idem(CREDIT, {"amount": "5", "reason": "r"})
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"


def test_a_member_can_read_but_not_credit(client, project):
    user = member(project)
    client.force_login(user)
    assert client.get("/api/v1/projects/acme/wallet").json()["balance"] == "100"
    response = client.post(CREDIT, {"amount": "5", "reason": "r"}, content_type="application/json",
                           HTTP_IDEMPOTENCY_KEY="m1")
    assert response.status_code == 403


def test_unknown_project_is_404(platform, db):
    response = platform.post_idem("/api/v1/projects/nope/wallet/credit", {"amount": "5", "reason": "r"})
    assert response.status_code == 404
    assert response.json() == {"error": "not_found", "detail": "no project 'nope'"}


@pytest.mark.django_db(transaction=True)
def test_fifty_parallel_debits_against_room_for_twenty_let_exactly_twenty_through(platform):
    from django.db import connection

    ProjectFactory(slug="acme", balance="20")

    def debit(i: int) -> int:
        try:
            client = ServiceClient(platform._credentials["HTTP_AUTHORIZATION"].split()[1])
            return client.post_idem(DEBIT, {"amount": "1", "reason": f"d{i}"}, key=f"par-{i}").status_code
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=50) as pool:
        codes = list(pool.map(debit, range(50)))
    assert codes.count(201) == 20
    assert codes.count(402) == 30
    body = wallet(platform)
    assert body["balance"] == "0" and body["available"] == "0"
    assert ledger_check().ok


@pytest.mark.django_db(transaction=True)
def test_twenty_parallel_retries_of_one_request_move_credits_once(platform):
    from django.db import connection

    ProjectFactory(slug="acme", balance="10")

    def credit(_: int) -> int:
        try:
            client = ServiceClient(platform._credentials["HTTP_AUTHORIZATION"].split()[1])
            return client.post_idem(CREDIT, {"amount": "1", "reason": "once"}, key="one-key").status_code
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=20) as pool:
        codes = list(pool.map(credit, range(20)))
    assert set(codes) <= {201, 409}
    assert codes.count(201) >= 1
    assert wallet(platform)["balance"] == "11"
    assert Transfer.objects.filter(reason="once").count() == 1
