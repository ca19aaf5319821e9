"""Which metered route a call matches."""

import pytest

from gateway.selectors import normalized_path, prefix_matches, route_for

from .helpers import metered_route

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(("uri", "path"), [
    ("/v1/chat?x=1", "/v1/chat"), ("/v1//chat/", "/v1/chat/"), ("/v1/./a/../chat", "/v1/chat"),
    ("/v1/%63hat", "/v1/chat"), ("//v1", "/v1"), ("", "/"), ("/../..", "/"), ("v1", "/v1"),
])
def test_a_path_is_matched_as_the_upstream_reads_it(uri, path):
    assert normalized_path(uri) == path


@pytest.mark.parametrize(("prefix", "path", "matches"), [
    ("/v1/chat", "/v1/chat", True), ("/v1/chat", "/v1/chat/x", True), ("/v1/chat", "/v1/chats", False),
    ("/v1/", "/v1", True), ("/v1/", "/v1/x", True), ("/", "/anything", True),
])
def test_a_prefix_matches_whole_segments(prefix, path, matches):
    assert prefix_matches(prefix, path) is matches


def test_the_longest_prefix_wins_then_the_exact_method():
    general = metered_route("/v1/")
    images = metered_route("/v1/images")
    posting = metered_route("/v1/images", method="POST")
    assert route_for("GET", "/v1/images/1").id == images.id
    assert route_for("post", "/v1/images/1").id == posting.id
    assert route_for("POST", "/v1/text").id == general.id
    assert route_for("GET", "/v2/text") is None
