from datetime import datetime
from decimal import Decimal

from metering.models import MetricQuery, UsageRecord
from quotas.models import ResourceType


def resource_type(code: str) -> ResourceType:
    return ResourceType.objects.get(code=code)


def metric_query(code: str, promql: str, result_unit: str = MetricQuery.ResultUnit.SECONDS, **kwargs) -> MetricQuery:
    return MetricQuery.objects.create(resource_type=resource_type(code), promql=promql, result_unit=result_unit, **kwargs)


def usage_record(project, code: str, window_start: datetime, window_end: datetime, quantity: str,
                 source: str = UsageRecord.Source.PUSH) -> UsageRecord:
    return UsageRecord.objects.create(project=project, resource_type=resource_type(code), window_start=window_start,
                                      window_end=window_end, quantity=Decimal(quantity), source=source)
