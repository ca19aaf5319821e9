"""A second WSGI handler for service calls made with an API key, without the browser middleware."""

from collections.abc import Callable, Iterable

from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler

# Bearer-key calls carry no cookies that matter: no session, no CSRF token, no flash messages, no frames.
SERVICE_MIDDLEWARE = [
    # Request id, duration, metrics and the log line, as in settings.MIDDLEWARE.
    "creditservice.lib.request_log.RequestObservationMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "creditservice.lib.paths.ApiPathGuardMiddleware",
    "django.middleware.common.CommonMiddleware",
]


class ServiceCallHandler(WSGIHandler):
    def load_middleware(self, is_async: bool = False) -> None:
        # BaseHandler reads settings.MIDDLEWARE; give it the lean list for this handler only, at start-up.
        full = settings.MIDDLEWARE
        settings.MIDDLEWARE = SERVICE_MIDDLEWARE
        try:
            super().load_middleware(is_async)
        finally:
            settings.MIDDLEWARE = full


def is_service_call(environ: dict) -> bool:
    return environ.get("PATH_INFO", "").startswith("/api/") and environ.get("HTTP_AUTHORIZATION", "")[:7].lower() == "bearer "


def route_service_calls(full_handler: WSGIHandler) -> Callable[[dict, Callable], Iterable[bytes]]:
    service_handler = ServiceCallHandler()

    def application(environ: dict, start_response: Callable) -> Iterable[bytes]:
        handler = service_handler if is_service_call(environ) else full_handler
        return handler(environ, start_response)

    return application
