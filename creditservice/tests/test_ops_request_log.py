"""The request middleware: a request id on every answer and log line, one log line per request with
the caller's key name and project, and the request metrics, through the full and the lean stack."""

import io
import json
import re

import pytest
from django.test import Client

from creditservice.lib.metrics import REQUEST_DURATION, RESPONSES
from creditservice.testing.fixtures import ServiceClient
from creditservice.testing.logs import capture_json_log
from creditservice.testing.metrics import sample_value
from creditservice.wsgi import application
from quotas.tests.helpers import commit, release, reserve
from wallets.tests.factories import platform_key, scoped_key

REQUEST_FIELDS = {"timestamp", "level", "logger", "message", "request_id", "method", "path", "status",
                  "duration_ms", "api_key", "project"}


def wsgi_call(method: str, path: str, body: bytes = b"", query: str = "", **headers) -> tuple[str, dict, bytes]:
    """A request through creditservice.wsgi.application, the app gunicorn serves (bearer calls take the lean stack)."""
    environ = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": query, "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000", "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "http",
        "CONTENT_LENGTH": str(len(body)), "CONTENT_TYPE": "application/json", **headers,
    }
    seen = {}

    def start_response(status, response_headers, exc_info=None):
        seen["status"], seen["headers"] = status, dict(response_headers)

    content = b"".join(application(environ, start_response))
    return seen["status"], seen["headers"], content


def test_a_request_without_an_id_gets_a_new_one(client):
    first, second = client.get("/healthz"), client.get("/healthz")
    assert re.fullmatch(r"[0-9a-f]{32}", first["X-Request-ID"])
    assert first["X-Request-ID"] != second["X-Request-ID"]


def test_the_callers_request_id_is_echoed(client):
    assert client.get("/healthz", HTTP_X_REQUEST_ID="trace-42/abc").headers["X-Request-ID"] == "trace-42/abc"


@pytest.mark.parametrize("sent", ["x" * 129, "line\nbreak", "caf\u00e9", ""])
def test_a_request_id_too_long_or_not_printable_ascii_is_replaced(client, sent):
    answer = client.get("/healthz", HTTP_X_REQUEST_ID=sent)
    assert re.fullmatch(r"[0-9a-f]{32}", answer["X-Request-ID"])


def test_an_api_call_logs_one_json_line_with_its_fields(db, project):
    key = scoped_key(project, name="billing-worker")
    with capture_json_log() as log:
        answer = ServiceClient(key).get("/api/v1/projects/acme/wallet?secret=hunter2", HTTP_X_REQUEST_ID="req-1")
    assert answer.status_code == 200
    [line] = log.lines("creditservice.request")
    assert REQUEST_FIELDS <= set(line)
    assert (line["method"], line["path"], line["status"]) == ("GET", "/api/v1/projects/acme/wallet", 200)
    assert (line["api_key"], line["project"], line["request_id"], line["level"]) == ("billing-worker", "acme", "req-1", "INFO")
    assert isinstance(line["duration_ms"], float)
    assert "hunter2" not in log.text  # the query string is never logged


def test_the_project_named_in_a_body_is_logged(platform, project):
    with capture_json_log() as log:
        assert reserve(platform, amount="1").status_code == 201
    [line] = log.lines("creditservice.request")
    assert (line["path"], line["status"], line["project"], line["api_key"]) == ("/api/v1/reservations", 201, "acme", "platform")


def test_a_commit_and_a_release_log_their_reservations_project(platform, project):
    committed, released = (reserve(platform, amount="1").json()["id"] for _ in range(2))
    with capture_json_log() as log:
        assert commit(platform, committed).status_code == 200
        assert release(platform, released).status_code == 200
    assert [line["project"] for line in log.lines("creditservice.request")] == ["acme", "acme"]


def test_every_line_logged_during_a_request_carries_its_id(db):
    with capture_json_log() as log:
        Client().get("/no-such-page", HTTP_X_REQUEST_ID="req-404")
    lines = log.lines()
    assert {line["logger"] for line in lines} >= {"django.request", "creditservice.request"}
    assert {line.get("request_id") for line in lines} == {"req-404"}


def test_a_browser_call_has_no_key_name(db, admin_client):
    with capture_json_log() as log:
        admin_client.get("/api/v1/projects/")
    [line] = log.lines("creditservice.request")
    assert line["api_key"] is None and line["status"] == 200


@pytest.mark.django_db(transaction=True)
def test_a_service_call_through_the_lean_stack_is_logged_and_answers_its_id(project):
    key = platform_key(name="deployer")
    with capture_json_log() as log:
        status, headers, _ = wsgi_call("GET", "/api/v1/projects/acme/wallet", query="token=s3cret",
                                       HTTP_AUTHORIZATION=f"Bearer {key}", HTTP_X_REQUEST_ID="lean-1")
    assert status.startswith("200")
    assert headers["X-Request-ID"] == "lean-1"
    [line] = log.lines("creditservice.request")
    assert (line["path"], line["api_key"], line["project"], line["request_id"]) == (
        "/api/v1/projects/acme/wallet", "deployer", "acme", "lean-1")
    assert key not in log.text and "s3cret" not in log.text


def test_answers_are_counted_by_status_and_timed_by_route(platform, project):
    before = {status: sample_value(RESPONSES, status=status) for status in ("402", "404")}
    timed = sample_value(REQUEST_DURATION, "_count", endpoint="reservation-create", method="POST")
    assert reserve(platform, amount="1000").status_code == 402
    assert platform.get("/api/v1/projects/nobody/wallet").status_code == 404
    assert platform.get("/api/v1/projects/nobody/wallet").status_code == 404
    assert sample_value(RESPONSES, status="402") == before["402"] + 1
    assert sample_value(RESPONSES, status="404") == before["404"] + 2
    assert sample_value(REQUEST_DURATION, "_count", endpoint="reservation-create", method="POST") == timed + 1


def test_unknown_paths_and_made_up_methods_share_one_label(client, db):
    before = sample_value(REQUEST_DURATION, "_count", endpoint="other", method="other")
    client.generic("BREW", "/coffee/1")
    client.generic("BREW", "/coffee/2")
    assert sample_value(REQUEST_DURATION, "_count", endpoint="other", method="other") == before + 2


def test_a_healthy_probe_is_logged_at_debug_only(client):
    with capture_json_log() as log:
        client.get("/healthz")
    [line] = log.lines("creditservice.request")
    assert line["level"] == "DEBUG"


def test_the_json_formatter_writes_one_object_per_line_with_plain_extras(client):
    with capture_json_log() as log:
        client.get("/healthz", HTTP_X_REQUEST_ID="one")
    [text] = [t for t in log.text.splitlines() if '"creditservice.request"' in t]
    assert json.loads(text)["request_id"] == "one"
