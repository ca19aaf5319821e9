"""Per-API-key rate limit for the API, as a DRF throttle (it runs after authentication and permissions).

The rate comes from the principal that authentication built from the ApiKey row (cached with it in
wallets/auth.py), so counting adds no database query to any call. Session users (staff in a browser)
are not limited here.
"""

from django.conf import settings
from rest_framework.throttling import BaseThrottle

from creditservice.lib.ratelimit import require_within_rate
from creditservice.lib.rates import effective_rate

from .auth import ServicePrincipal


class ApiKeyRateThrottle(BaseThrottle):
    def allow_request(self, request, view) -> bool:
        user = request.user
        if isinstance(user, ServicePrincipal):
            # Raises RateLimited, which the API's exception handler answers: 429 in the error shape with
            # Retry-After, the same path as every other refusal.
            require_within_rate(scope="api_key", ident=user.api_key_id, what="this API key",
                                rate=effective_rate(override=user.rate_limit, default=settings.API_RATE_LIMIT))
        return True
