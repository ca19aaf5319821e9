from datetime import datetime

from creditservice.lib.money import credits_to_picos
from metering.models import MetricQuery, UsageRecord
from quotas.models import ResourceType
from quotas.quantities import parse_quantity


def units(text: str) -> int:
    """A quantity as callers write it ("0.25") → the micro-units the database holds."""
    return parse_quantity(text, allow_zero=True)


def picos(text: str) -> int:
    """A price or rate in credits ("0.04") → the pico-credits the database holds."""
    return credits_to_picos(text)


def resource_type(code: str) -> ResourceType:
    return ResourceType.objects.get(code=code)


def metric_query(code: str, promql: str, result_unit: str = MetricQuery.ResultUnit.SECONDS, **kwargs) -> MetricQuery:
    return MetricQuery.objects.create(resource_type=resource_type(code), promql=promql, result_unit=result_unit, **kwargs)


def usage_record(project, code: str, window_start: datetime, window_end: datetime, quantity: str,
                 source: str = UsageRecord.Source.PUSH) -> UsageRecord:
    return UsageRecord.objects.create(project=project, resource_type=resource_type(code), window_start=window_start,
                                      window_end=window_end, quantity=units(quantity), source=source)
