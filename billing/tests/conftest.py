from datetime import UTC, datetime, timedelta

import pytest
import time_machine

# A fixed "now": 05:30 UTC, so the last closed window is 04:00-05:00.
NOW = datetime(2026, 11, 22, 5, 30, tzinfo=UTC)
WINDOW = datetime(2026, 11, 22, 4, 0, tzinfo=UTC)
HOUR = timedelta(hours=1)


@pytest.fixture
def clock():
    """Time stands at NOW (and moves on from there) until the test moves it with clock.move_to()."""
    with time_machine.travel(NOW, tick=True) as traveller:
        yield traveller


@pytest.fixture
def shipped_data(django_db_setup, django_db_blocker):
    """Transactional tests flush the tables, data migrations included: put the shipped types and prices back."""
    import importlib

    from django.apps import apps

    def ship():
        for module in ("quotas.migrations.0002_shipped_resource_types", "metering.migrations.0002_shipped_prices"):
            importlib.import_module(module).ship(apps, None)

    return ship


@pytest.fixture
def receiver():
    from .receiver import Receiver

    server = Receiver()
    yield server
    server.stop()
