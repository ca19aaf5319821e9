"""Routes of the API: each one answers with and without its trailing slash, and nothing else is HTML.

Django's APPEND_SLASH answered `POST /api/v1/projects` with a 301 that drops the body (a 500 error
page under DEBUG), and `/wallet/` or `/reservations/` with a 404: a client had to know which of our
routes end in "/". api_path() matches both spellings of one route, so the body is never lost and no
redirect is needed; reverse() and the schema keep the spelling the route is written with.
"""

from collections.abc import Callable

from django.urls import URLPattern, re_path
from django.urls.resolvers import RoutePattern

from .views import api_not_found


class EitherSlashRoutePattern(RoutePattern):
    """An endpoint route that also matches the path with its trailing slash added or removed."""

    def __init__(self, route: str, name: str | None = None):
        super().__init__(route, name=name, is_endpoint=True)

    def match(self, path: str):
        other = path[:-1] if path.endswith("/") else f"{path}/"
        return super().match(path) or super().match(other)


def api_path(route: str, view: Callable, name: str | None = None) -> URLPattern:
    """path(route, view, name=name) that takes `route` with or without its trailing slash."""
    return URLPattern(EitherSlashRoutePattern(route, name=name), view, name=name)


# Last in the root URL conf: any other /api/ path is a JSON 404 in the error shape (with DEBUG too,
# where Django's 404 page would be HTML), for every method, before CSRF or a slash redirect.
api_catch_all = re_path(r"^api/", api_not_found)
