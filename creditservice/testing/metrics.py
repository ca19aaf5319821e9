"""Reading a Prometheus metric's current value in tests, through the metric's public collect()."""

from prometheus_client.metrics import MetricWrapperBase


def sample_value(metric: MetricWrapperBase, suffix: str = "_total", **labels: str) -> float:
    """The value of the metric's sample named <name><suffix> with exactly these labels (0 if none yet).

    Metrics are process-wide, so a test reads the value before and after what it does and compares.
    Histograms: suffix="_count" or "_sum".
    """
    for family in metric.collect():
        for sample in family.samples:
            if sample.name == family.name + suffix and sample.labels == labels:
                return sample.value
    return 0.0
