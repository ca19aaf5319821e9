import pytest

from gateway import selectors


@pytest.fixture(autouse=True)
def _fresh_route_cache():
    """Routes are cached per process; each test's database has its own."""
    selectors.clear_route_cache()
    yield
    selectors.clear_route_cache()
