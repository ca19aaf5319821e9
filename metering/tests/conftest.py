import pytest

from metering.tests import prometheus as prom


@pytest.fixture(scope="session")
def prometheus_server():
    """One real Prometheus for the session, started on a free loopback port with back-filled samples."""
    if not prom.binaries_present():
        pytest.skip("needs Debian's prometheus package (/usr/bin/prometheus and /usr/bin/promtool)")
    server = prom.start_prometheus()
    yield server
    server.stop()


@pytest.fixture
def prometheus(prometheus_server, settings):
    """The real Prometheus, with settings pointed at it and 15-minute windows (the data's windows)."""
    settings.PROMETHEUS_URL = prometheus_server.url
    settings.BILLING_WINDOW_MINUTES = 15
    return prometheus_server


@pytest.fixture
def fake_store(settings):
    """Start a FakeStore answering with respond(); settings point at it. Stopped after the test."""
    stores = []

    def start(respond, delay: float = 0.0, trickle: float = 0.0) -> prom.FakeStore:
        store = prom.FakeStore(respond, delay=delay, trickle=trickle)
        stores.append(store)
        settings.PROMETHEUS_URL = store.url
        settings.BILLING_WINDOW_MINUTES = 15
        return store

    yield start
    for store in stores:
        store.stop()
