"""The URL conf as data, for tests that must cover every endpoint: a new route cannot be left out."""

from dataclasses import dataclass

from django.urls import URLPattern, URLResolver, get_resolver

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_VIEW_METHODS = ("get", "post", "put", "patch", "delete")


@dataclass(frozen=True)
class Route:
    name: str
    path: str  # the pattern as written, from the site root: "api/v1/projects/<slug:slug>/wallet"
    # The methods a class-based view handles; None for a function view (its decorators say, not its class).
    methods: frozenset[str] | None
    csrf_exempt: bool

    @property
    def takes_writes(self) -> bool:
        if self.methods is None:
            # A function view that takes POSTs from outside (the Stripe webhook) is csrf_exempt.
            return self.csrf_exempt
        return bool(self.methods & WRITE_METHODS)


def url_routes(*, skip: tuple[str, ...] = ("admin/", "accounts/")) -> list[Route]:
    """Every named route of the site, except those under the `skip` prefixes (Django's own screens)."""
    routes: list[Route] = []

    def walk(patterns, prefix: str) -> None:
        for pattern in patterns:
            here = prefix + str(pattern.pattern)
            if here.startswith(skip):
                continue
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, here)
            elif isinstance(pattern, URLPattern) and pattern.name:
                callback = pattern.callback
                view = getattr(callback, "view_class", None) or getattr(callback, "cls", None)
                methods = None if view is None else frozenset(m.upper() for m in _VIEW_METHODS if hasattr(view, m))
                routes.append(Route(name=pattern.name, path=here, methods=methods,
                                    csrf_exempt=bool(getattr(callback, "csrf_exempt", False))))

    walk(get_resolver().url_patterns, "")
    return routes


def api_routes() -> list[Route]:
    """The service API: every route but the admin, the portal and the sign-in pages."""
    return url_routes(skip=("admin/", "accounts/", "portal/"))


def write_route_names() -> set[str]:
    """Names of the service API's routes whose view accepts a write (POST, PUT, PATCH, DELETE)."""
    return {route.name for route in api_routes() if route.takes_writes}
