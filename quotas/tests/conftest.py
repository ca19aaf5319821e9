import pytest

from quotas import selectors


@pytest.fixture(autouse=True)
def _fresh_resource_type_cache():
    """Resource type ids are cached per process; each test's database may number them differently."""
    selectors.clear_caches()
    yield
    selectors.clear_caches()

