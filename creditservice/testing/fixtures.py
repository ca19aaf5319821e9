"""Fixtures shared by every app's tests (loaded by the root conftest)."""

import itertools

import pytest
from rest_framework.test import APIClient

# Suite-wide fixture: a local fake of Stripe's API (settings point at it while it is used).
from payments.tests.fake_stripe import fake_stripe  # noqa: F401
from wallets.models import Project
from wallets.tests.factories import ProjectFactory, platform_key

_keys = itertools.count()


class ServiceClient(APIClient):
    """An API client that sends a bearer key; post_idem adds an Idempotency-Key."""

    def __init__(self, key: str | None = None, **kwargs):
        super().__init__(**kwargs)
        if key:
            self.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")

    def post_idem(self, path: str, data=None, key: str | None = None, **extra):
        key = key or f"idem-{next(_keys)}"
        return self.post(path, data, format="json", HTTP_IDEMPOTENCY_KEY=key, **extra)


@pytest.fixture
def project(db) -> Project:
    return ProjectFactory(slug="acme", balance="100")


@pytest.fixture
def platform(db) -> ServiceClient:
    return ServiceClient(platform_key())


@pytest.fixture
def anonymous() -> ServiceClient:
    return ServiceClient()
