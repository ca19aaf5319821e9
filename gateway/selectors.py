"""Reads of gateway admission: which metered route a call matches, from a per-process cache."""

import posixpath
import time
from dataclasses import dataclass
from urllib.parse import unquote

from django.conf import settings

from .models import MeteredRoute


@dataclass(frozen=True)
class Route:
    id: int
    method: str
    path_prefix: str
    resource_type: str  # code
    price: int  # micro-credits per call


# (valid until, routes longest prefix first, an exact method before "*" at the same prefix). Every web
# worker reads all routes once per GATEWAY_ROUTE_CACHE_SECONDS: a route table is small and changes
# rarely, and the hot path then needs no query to know whether a call is metered.
_cache: tuple[float, tuple[Route, ...]] | None = None


def _load() -> tuple[Route, ...]:
    rows = MeteredRoute.objects.values_list("id", "method", "path_prefix", "resource_type__code", "price")
    routes = [Route(*row) for row in rows]
    return tuple(sorted(routes, key=lambda r: (-len(r.path_prefix), r.method == MeteredRoute.ANY_METHOD)))


def routes() -> tuple[Route, ...]:
    global _cache
    now = time.monotonic()
    if _cache is None or _cache[0] <= now:
        _cache = (now + settings.GATEWAY_ROUTE_CACHE_SECONDS, _load())
    return _cache[1]


def clear_route_cache() -> None:
    global _cache
    _cache = None


def normalized_path(uri: str) -> str:
    """The path of a request URI as the upstream will read it: without the query, percent-decoded, with
    "//", "." and ".." resolved. Matching the raw URI would let "/v1//chat" or "/v1/%63hat" past a
    route on "/v1/chat" unmetered."""
    path = unquote(uri.split("?", 1)[0].split("#", 1)[0]) or "/"
    if not path.startswith("/"):
        path = "/" + path
    normalized = posixpath.normpath(path)
    if normalized.startswith("//"):  # normpath keeps a leading "//" (POSIX allows it to mean something)
        normalized = "/" + normalized.lstrip("/")
    if path.endswith("/") and normalized != "/":
        normalized += "/"
    return normalized


def prefix_matches(prefix: str, path: str) -> bool:
    """Whole segments: "/v1/chat" matches /v1/chat and /v1/chat/…, not /v1/chats; "/" matches every path."""
    if prefix.endswith("/"):
        return path.startswith(prefix) or path == prefix[:-1]
    return path == prefix or path.startswith(prefix + "/")


def route_for(method: str, uri: str) -> Route | None:
    """The metered route of this call, or None: the call is not metered."""
    path = normalized_path(uri)
    method = method.upper()
    for route in routes():
        if route.method in (method, MeteredRoute.ANY_METHOD) and prefix_matches(route.path_prefix, path):
            return route
    return None
