"""Service authentication with API keys: `Authorization: Bearer <key>`.

Keys are random (256 bits), so a fast SHA-256 is enough to store them safely; a password hasher
would cost milliseconds on every request. Lookups are cached in process memory for
API_KEY_CACHE_SECONDS, so a revoked key stops working (and a changed rate limit applies) within that
many seconds.
"""

import hashlib
import secrets
import time
from dataclasses import dataclass

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from .models import ApiKey, Project, validate_rate_limit

KEY_PREFIX = "cs_"


@dataclass(frozen=True)
class ServicePrincipal:
    """The caller behind an API key; stands in for request.user on service calls."""

    api_key_id: int
    project_id: int | None
    name: str
    # The key's own rate limit ("" = API_RATE_LIMIT applies); cached with the key, read by wallets/throttling.py.
    rate_limit: str = ""

    is_authenticated = True
    is_staff = False
    is_superuser = False
    is_active = True
    pk = None

    @property
    def is_platform(self) -> bool:
        return self.project_id is None

    @property
    def actor(self) -> str:
        return f"api_key:{self.api_key_id}"

    @property
    def idempotency_scope(self) -> str:
        return self.actor


def hash_key(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()


def api_key_create(*, name: str, project: Project | None = None, rate_limit: str = "") -> tuple[ApiKey, str]:
    """A new key; the raw key is returned once and never stored."""
    validate_rate_limit(rate_limit)
    raw_key = KEY_PREFIX + secrets.token_urlsafe(32)
    api_key = ApiKey.objects.create(name=name, project=project, prefix=raw_key[:10], key_hash=hash_key(raw_key),
                                    rate_limit=rate_limit)
    return api_key, raw_key


def api_key_set_rate_limit(*, api_key: ApiKey, rate_limit: str) -> None:
    """The key's own rate limit ("" = API_RATE_LIMIT, "unlimited"); other web workers apply it within
    API_KEY_CACHE_SECONDS, when their cached copy of the key runs out."""
    validate_rate_limit(rate_limit)
    api_key.rate_limit = rate_limit
    api_key.save(update_fields=["rate_limit"])
    clear_key_cache()


_cache: dict[str, tuple[float, ServicePrincipal | None]] = {}


def principal_for_key(raw_key: str) -> ServicePrincipal | None:
    digest = hash_key(raw_key)
    now = time.monotonic()
    cached = _cache.get(digest)
    if cached is not None and cached[0] > now:
        return cached[1]
    row = (ApiKey.objects.filter(key_hash=digest, revoked_at__isnull=True)
           .values_list("id", "project_id", "name", "rate_limit").first())
    principal = ServicePrincipal(api_key_id=row[0], project_id=row[1], name=row[2], rate_limit=row[3]) if row else None
    if len(_cache) > 10_000:
        _cache.clear()
    _cache[digest] = (now + settings.API_KEY_CACHE_SECONDS, principal)
    return principal


def clear_key_cache() -> None:
    _cache.clear()


class ApiKeyAuthentication(authentication.BaseAuthentication):
    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        scheme, _, raw_key = header.partition(" ")
        if scheme.lower() != "bearer" or not raw_key.strip():
            raise exceptions.AuthenticationFailed("use 'Authorization: Bearer <api key>'")
        principal = principal_for_key(raw_key.strip())
        if principal is None:
            raise exceptions.AuthenticationFailed("unknown or revoked API key")
        return principal, principal

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'


class ApiKeyScheme(OpenApiAuthenticationExtension):
    """How the schema names this authentication: an HTTP bearer token (drf-spectacular finds it by target_class)."""

    target_class = ApiKeyAuthentication
    name = "apiKey"

    def get_security_definition(self, auto_schema) -> dict:
        return {"type": "http", "scheme": "bearer", "description": (
            "Authorization: Bearer <API key>. A platform key acts for every project; a project key for its own.")}
