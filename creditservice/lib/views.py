"""Error pages: JSON in the error shape for the API, HTML for people."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe

from .errors import json_error


@require_safe
def home(request: HttpRequest) -> HttpResponse:
    """`/`, the address `make run` prints: staff go to the admin, everyone else to the portal (which asks a
    signed-out visitor to sign in first). The admin itself lets in is_staff users only, so that is the test here."""
    user = request.user
    return redirect("admin:index" if user.is_active and user.is_staff else "portal:index")


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if request.path.startswith("/api/"):
        return json_error(404, "not_found", "Not found.")
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if request.path.startswith("/api/"):
        return json_error(500, "server_error", "An unexpected error occurred; it has been logged.")
    return defaults.server_error(request)


@csrf_exempt
def api_not_found(request: HttpRequest, *args: object, **kwargs: object) -> HttpResponse:
    """Any /api/ path that no route names: a 404 in the error shape for every method."""
    return json_error(404, "not_found", f"no API route {request.path[:200]!r}; see /api/schema/ for the routes")
