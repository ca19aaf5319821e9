from datetime import datetime

from billing.services import billing_run_execute
from metering.models import UsageRecord
from metering.services import usage_records_store
from metering.tests.factories import units
from quotas.models import ResourceType
from wallets.models import Account, Project

from .conftest import HOUR


def resource_type(code: str) -> ResourceType:
    return ResourceType.objects.get(code=code)


def usage(project: Project, code: str, window_start: datetime, quantity: str, source: str = UsageRecord.Source.PUSH) -> None:
    """Set one source's usage of a window (as metering stores it: updated_at moves on change)."""
    usage_records_store(resource_type_id=resource_type(code).id, window_start=window_start, window_end=window_start + HOUR,
                        quantities={project.id: units(quantity)}, source=source, source_reference="test")


def balance(project: Project) -> int:
    return Account.objects.get(project=project).balance


def bill(window_start: datetime, **kwargs):
    return billing_run_execute(window_start=window_start, trigger="test", **kwargs)
