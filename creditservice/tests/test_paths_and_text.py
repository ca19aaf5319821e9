"""Strings, paths, ids and cursors that no column can hold are a 4xx in the error shape, never a 500."""

import io
import json

import pytest

from creditservice.lib.text import TextError, clean_text
from creditservice.wsgi import application
from quotas.models import Reservation
from quotas.selectors import clear_caches
from quotas.tests.helpers import reserve
from wallets.tests.factories import platform_key

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh_resource_type_cache():
    clear_caches()
    yield
    clear_caches()


@pytest.mark.parametrize("text", ["a\x00b", "a\x01", "\x1b[31m", "line\nbreak", "del\x7f", "c1\x85", "lone\ud800"])
def test_clean_text_refuses_control_characters_and_lone_surrogates(text):
    with pytest.raises(TextError, match="control characters"):
        clean_text(text, max_length=100)


def test_clean_text_keeps_what_it_accepts_and_bounds_the_length():
    assert clean_text("Ünïcode ✓ 日本", max_length=12) == "Ünïcode ✓ 日本"
    with pytest.raises(TextError, match="at most 3"):
        clean_text("abcd", max_length=3)
    with pytest.raises(TextError, match="blank"):
        clean_text("  ", max_length=3)
    assert clean_text("", max_length=3, allow_blank=True) == ""
    with pytest.raises(TextError):
        clean_text(5, max_length=3)


def test_nul_in_a_path_segment_is_a_400_not_a_500(platform, project):
    # <str:session_id> reached a PostgreSQL lookup with the NUL: "text fields cannot contain NUL".
    response = platform.get("/api/v1/projects/acme/checkout-sessions/cs%00x")
    assert response.status_code == 400
    assert response.json()["error"] == "validation_error"
    assert "U+0000" in response.json()["detail"]["path"][0]
    assert platform.get("/api/v1/projects/ac%00me/wallet").status_code == 400
    assert platform.get("/api/v1/projects/acme/transactions?kind=%01").status_code == 400


def test_a_control_character_in_the_path_is_refused_on_the_lean_service_handler_too(project):
    environ = {
        "REQUEST_METHOD": "GET", "PATH_INFO": "/api/v1/projects/acme/checkout-sessions/cs\x00x", "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8000", "wsgi.input": io.BytesIO(b""), "wsgi.url_scheme": "http",
        "HTTP_AUTHORIZATION": f"Bearer {platform_key()}",
    }
    seen = {}
    content = b"".join(application(environ, lambda status, headers, exc_info=None: seen.update(status=status)))
    assert seen["status"].startswith("400"), content
    assert json.loads(content)["error"] == "validation_error"


@pytest.mark.parametrize("reservation_id", ["99999999999999999999", "9223372036854775808", "0"])
def test_an_id_no_column_holds_is_a_404_not_a_500(platform, project, reservation_id):
    # SQLite raised OverflowError for an id past 64 bits; PostgreSQL found nothing.
    for suffix, method in (("", platform.get), ("/commit", platform.post), ("/release", platform.post)):
        response = method(f"/api/v1/reservations/{reservation_id}{suffix}")
        assert response.status_code == 404, (suffix, response.content)
        assert response.json()["error"] == "not_found"


def test_the_largest_id_a_column_holds_is_looked_up(platform, project):
    response = platform.get("/api/v1/reservations/9223372036854775807")
    assert response.status_code == 404
    assert "no reservation" in response.json()["detail"]


@pytest.mark.parametrize("cursor", ["garbage", "cD1hYmM%3D", "cD05OTk5OTk5OTk5OTk5OTk5OTk5OTk5OTk5OQ%3D%3D", "c" * 201])
@pytest.mark.parametrize("path", ["/api/v1/projects/acme/transactions", "/api/v1/projects/acme/reservations"])
def test_a_cursor_this_api_did_not_make_is_a_400(platform, project, path, cursor):
    # Before: 404 "Invalid cursor" for garbage, and a 500 for a decodable one whose position ("p=abc",
    # or past any id) reached the id filter.
    response = platform.get(f"{path}?cursor={cursor}")
    assert response.status_code == 400, response.content
    assert response.json()["error"] == "validation_error"
    assert "cursor" in response.json()["detail"]


def test_the_cursors_this_api_makes_still_page(platform, project):
    for _ in range(3):
        reserve(platform)
    first = platform.get("/api/v1/projects/acme/reservations?page_size=2").json()
    assert len(first["results"]) == 2
    rest = platform.get(first["next"]).json()
    assert [r["id"] for r in first["results"] + rest["results"]] == list(
        Reservation.objects.order_by("-id").values_list("id", flat=True))
