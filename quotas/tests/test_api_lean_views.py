"""An API key's reserve and commit skip DRF's dispatch (wallets/service_calls.py): every answer, refusals
included, is the one the DRF view gives for the same request."""

import json

import pytest
from django.test import Client
from rest_framework.test import APIRequestFactory

from creditservice.lib.json_parser import MAX_BODY_BYTES
from quotas import api
from quotas.tests.helpers import RESERVE
from wallets.tests.factories import ProjectFactory, platform_key

pytestmark = pytest.mark.django_db

GOOD = {"project": "acme", "resource_type": "vm", "quantity": "1", "amount": "10"}
# Headers that matter to a caller; Date and the request id differ per call by design.
COMPARED_HEADERS = ("Content-Type", "Retry-After", "WWW-Authenticate", "Idempotent-Replayed")


@pytest.fixture
def key(db) -> str:
    ProjectFactory(slug="acme", balance="100")
    return platform_key()


def _lean(path: str, body: bytes, CONTENT_TYPE="application/json", **headers):
    response = Client().generic("POST", path, body, content_type=CONTENT_TYPE, **headers)
    return response, response.wsgi_request


def _drf(view, path: str, body: bytes, CONTENT_TYPE="application/json", **kwargs):
    headers = {k: v for k, v in kwargs.items() if k.startswith("HTTP_")}
    request = APIRequestFactory().generic("POST", path, body, content_type=CONTENT_TYPE, **headers)
    response = view(request, **{k: v for k, v in kwargs.items() if k not in headers})
    response.render()
    return response


def _same(lean, drf) -> None:
    assert lean.status_code == drf.status_code, (lean.content, drf.content)
    assert json.loads(lean.content) == json.loads(drf.content)
    for name in COMPARED_HEADERS:
        assert lean.get(name) == drf.get(name), name


def _json(body) -> bytes:
    return json.dumps(body).encode()


REFUSALS = {
    "unknown key": (_json(GOOD), {"HTTP_AUTHORIZATION": "Bearer nope", "HTTP_IDEMPOTENCY_KEY": "k"}),
    "empty key": (_json(GOOD), {"HTTP_AUTHORIZATION": "Bearer ", "HTTP_IDEMPOTENCY_KEY": "k"}),
    "no Idempotency-Key": (_json(GOOD), {}),
    "not JSON": (b"{nope", {"HTTP_IDEMPOTENCY_KEY": "k"}),
    "a key twice": (b'{"amount": "1", "amount": "1000"}', {"HTTP_IDEMPOTENCY_KEY": "k"}),
    "too deep": (b"[" * 40 + b"]" * 40, {"HTTP_IDEMPOTENCY_KEY": "k"}),
    "past the recursion limit": (b'{"a": ' + b"[" * 200_000 + b"]" * 200_000 + b"}", {"HTTP_IDEMPOTENCY_KEY": "k"}),
    "deep inside an object": (b'{"a": ' + b'{"b": ' * 40 + b"1" + b"}" * 41, {"HTTP_IDEMPOTENCY_KEY": "k"}),
    "not an object": (b"[]", {"HTTP_IDEMPOTENCY_KEY": "k"}),
    "not UTF-8": (b'{"project": "\xff"}', {"HTTP_IDEMPOTENCY_KEY": "k"}),
    "a float amount": (_json({**GOOD, "amount": 10.5}), {"HTTP_IDEMPOTENCY_KEY": "k"}),
    "unknown project": (_json({**GOOD, "project": "nobody"}), {"HTTP_IDEMPOTENCY_KEY": "k"}),
    "beyond the wallet": (_json({**GOOD, "amount": "1000"}), {"HTTP_IDEMPOTENCY_KEY": "k"}),
    "a NUL in the project": (_json({**GOOD, "project": "ac\u0000me"}), {"HTTP_IDEMPOTENCY_KEY": "k"}),
    "an unknown field": (_json({**GOOD, "colour": "red"}), {"HTTP_IDEMPOTENCY_KEY": "k"}),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_a_refused_reservation_is_answered_as_the_drf_view_answers_it(key, case):
    body, headers = REFUSALS[case]
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}", "CONTENT_TYPE": "application/json", **headers}
    lean, _ = _lean(RESERVE, body, **headers)
    assert lean.status_code >= 400
    _same(lean, _drf(api.ReservationCreateView.as_view(), RESERVE, body, **headers))


def test_an_oversized_body_is_refused_before_it_is_read(key):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}", "CONTENT_TYPE": "application/json", "HTTP_IDEMPOTENCY_KEY": "k"}
    body = b'{"project": "' + b"a" * MAX_BODY_BYTES + b'"}'
    lean, _ = _lean(RESERVE, body, **headers)
    assert lean.status_code == 413 and lean.json()["error"] == "payload_too_large"
    _same(lean, _drf(api.ReservationCreateView.as_view(), RESERVE, body, **headers))


def test_a_reservation_and_its_replay_are_the_same_through_either_view(key):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}", "CONTENT_TYPE": "application/json", "HTTP_IDEMPOTENCY_KEY": "r1"}
    first, request = _lean(RESERVE, _json(GOOD), **headers)
    assert first.status_code == 201 and first.get("Idempotent-Replayed") is None
    assert request.auth is not None  # the log line names the key
    replay = _drf(api.ReservationCreateView.as_view(), RESERVE, _json(GOOD), **headers)
    assert replay.status_code == 201 and replay["Idempotent-Replayed"] == "true"
    assert json.loads(replay.content) == first.json()
    again, _ = _lean(RESERVE, _json(GOOD), **headers)
    _same(again, replay)
    other_body, _ = _lean(RESERVE, _json({**GOOD, "amount": "11"}), **headers)
    _same(other_body, _drf(api.ReservationCreateView.as_view(), RESERVE, _json({**GOOD, "amount": "11"}), **headers))
    assert other_body.status_code == 422


def test_a_commit_and_its_repeat_are_the_same_through_either_view(key):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}", "CONTENT_TYPE": "application/json"}
    reservation = _lean(RESERVE, _json(GOOD), HTTP_IDEMPOTENCY_KEY="c1", **headers)[0].json()
    path = f"/api/v1/reservations/{reservation['id']}/commit"
    committed, _ = _lean(path, b"", **headers)  # no body: the whole hold
    assert committed.status_code == 200 and committed.json()["committed_amount"] == "10"
    repeat = _drf(api.ReservationCommitView.as_view(), path, b"", reservation_id=reservation["id"], **headers)
    _same(committed, repeat)
    for body in (_json({"amount": "5"}), b"{oops", _json({"amount": "-1"})):
        _same(_lean(path, body, **headers)[0],
              _drf(api.ReservationCommitView.as_view(), path, body, reservation_id=reservation["id"], **headers))


def test_other_callers_and_bodies_go_to_the_drf_view(key, admin_client):
    # A form body, an Accept that takes no JSON, a staff session: DRF's answers (415, 406, its permissions).
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}", "HTTP_IDEMPOTENCY_KEY": "f1"}
    form, _ = _lean(RESERVE, b"project=acme", CONTENT_TYPE="application/x-www-form-urlencoded", **headers)
    assert form.status_code == 415 and form.json()["error"] == "unsupported_media_type"
    html, _ = _lean(RESERVE, _json(GOOD), CONTENT_TYPE="application/json", HTTP_ACCEPT="text/html", **headers)
    assert html.status_code == 406 and html.json()["error"] == "not_acceptable"
    staff = admin_client.post(RESERVE, GOOD, content_type="application/json", HTTP_IDEMPOTENCY_KEY="s1")
    assert staff.status_code == 201, staff.content


def test_an_api_key_reservation_does_not_go_through_drf(key, monkeypatch):
    def drf_post(*args, **kwargs):
        raise AssertionError("DRF's view served a call the lean view takes")

    monkeypatch.setattr(api.ReservationCreateView, "post", drf_post)
    monkeypatch.setattr(api.ReservationCommitView, "post", drf_post)
    headers = {"HTTP_AUTHORIZATION": f"Bearer {key}", "HTTP_IDEMPOTENCY_KEY": "d1"}
    created, _ = _lean(RESERVE, _json(GOOD), **headers)
    assert created.status_code == 201
    committed, _ = _lean(f"/api/v1/reservations/{created.json()['id']}/commit", b"{}", **headers)
    assert committed.status_code == 200
