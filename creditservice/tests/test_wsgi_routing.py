"""The production WSGI app: bearer-key API calls take the lean handler, browsers the full one."""

import io
import json

import pytest

from creditservice.lib.lean_handler import is_service_call
from creditservice.wsgi import application
from wallets.tests.factories import member, platform_key


def call(method: str, path: str, body: bytes = b"", **headers) -> tuple[str, dict, bytes]:
    environ = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000", "wsgi.input": io.BytesIO(body), "wsgi.url_scheme": "http",
        "CONTENT_LENGTH": str(len(body)), "CONTENT_TYPE": "application/json", **headers,
    }
    seen = {}

    def start_response(status, response_headers, exc_info=None):
        seen["status"], seen["headers"] = status, dict(response_headers)

    content = b"".join(application(environ, start_response))
    return seen["status"], seen["headers"], content


def test_only_bearer_calls_to_the_api_are_service_calls():
    assert is_service_call({"PATH_INFO": "/api/v1/reservations", "HTTP_AUTHORIZATION": "Bearer cs_x"})
    assert not is_service_call({"PATH_INFO": "/api/v1/reservations"})
    assert not is_service_call({"PATH_INFO": "/admin/", "HTTP_AUTHORIZATION": "Bearer cs_x"})


@pytest.mark.django_db(transaction=True)
def test_a_service_call_works_without_cookies_or_csrf_and_sets_no_session(project):
    key = platform_key()
    body = json.dumps({"amount": "1", "reason": "wsgi"}).encode()
    status, headers, content = call("POST", "/api/v1/projects/acme/wallet/credit", body,
                                    HTTP_AUTHORIZATION=f"Bearer {key}", HTTP_IDEMPOTENCY_KEY="w1")
    assert status.startswith("201"), content
    assert json.loads(content)["balance"] == "101"
    assert "Set-Cookie" not in headers


@pytest.mark.django_db(transaction=True)
def test_a_browser_session_still_goes_through_csrf(project, client):
    user = member(project)
    client.force_login(user)
    session_cookie = client.cookies["sessionid"].value
    status, _, content = call("POST", "/api/v1/projects/acme/wallet/credit", b"{}",
                              HTTP_COOKIE=f"sessionid={session_cookie}", HTTP_IDEMPOTENCY_KEY="w2")
    assert status.startswith("403")
    assert b"CSRF" in content
