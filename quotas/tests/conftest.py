import pytest

from quotas import selectors


@pytest.fixture(autouse=True)
def _fresh_resource_type_cache():
    """Resource type ids are cached per process; each test's database may number them differently."""
    selectors.clear_caches()
    yield
    selectors.clear_caches()


def pytest_generate_tests(metafunc):
    """On PostgreSQL every admission test runs on both implementations of reserve and commit; the
    single-statement one (quotas/fastpath.py) does not exist on SQLite, so there they run once."""
    from django.conf import settings

    if "admission_path" in metafunc.fixturenames:
        on_postgres = settings.DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
        metafunc.parametrize("admission_path", ["general", "single_statement"] if on_postgres else ["general"],
                             indirect=True)


@pytest.fixture(autouse=True)
def admission_path(request, settings):
    settings.ADMISSION_SINGLE_STATEMENT = request.param == "single_statement"
    return request.param
