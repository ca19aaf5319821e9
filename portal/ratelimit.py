"""The portal's writes are limited per signed-in user (PORTAL_RATE_LIMIT), counted like the API's keys."""

from collections.abc import Callable
from functools import wraps

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from creditservice.lib.errors import RateLimited
from creditservice.lib.ratelimit import require_within_rate
from creditservice.lib.rates import parse_rate


def limit_writes_per_user(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Put under @login_required: an over-limit write is a 429 page with Retry-After before the view runs
    (no database work, no Stripe call)."""

    @wraps(view)
    def limited(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        rate = parse_rate(settings.PORTAL_RATE_LIMIT)
        try:
            require_within_rate(scope="portal_user", ident=request.user.pk, rate=rate, what="this account")
        except RateLimited as error:
            response = render(request, "portal/rate_limited.html",
                              {"rate": rate, "retry_after": error.extra["retry_after"]}, status=429)
            response["Retry-After"] = error.headers["Retry-After"]
            return response
        return view(request, *args, **kwargs)

    return limited
