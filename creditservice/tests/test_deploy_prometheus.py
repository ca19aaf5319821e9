"""deploy/prometheus: the scrape config and the alert rules are valid, every alert is proved by promtool's
unit tests to fire on a bad series and stay quiet on a healthy one, and every metric the rules or their
tests name is one creditservice exports (so a renamed metric cannot leave an alert watching nothing)."""

import re
import subprocess
from pathlib import Path

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase

from creditservice import state_metrics
from creditservice.lib import metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
CONFIG, RULES, TESTS = DEPLOY / "prometheus.yml", DEPLOY / "rules" / "creditservice.yml", DEPLOY / "tests.yml"
METRIC_NAME = re.compile(r"\bcreditservice_[a-z0-9_]+\b")
# Prometheus' own series, not ours.
PROMETHEUS_SERIES = {"up"}


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["promtool", *args], cwd=DEPLOY, capture_output=True, text=True, timeout=120)


def alerts() -> list[dict]:
    return [rule for group in yaml.safe_load(RULES.read_text())["groups"] for rule in group["rules"]]


def exported_series() -> set[str]:
    """Every series name /metrics can serve: the registry's, with their type's suffixes, and the gauges."""
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
    names = set(state_metrics.GAUGES)
    for metric in vars(metrics).values():
        if isinstance(metric, MetricWrapperBase):
            for family in metric.describe():
                names |= {family.name + suffix for suffix in suffixes[family.type]}
    return names


@pytest.mark.prometheus
def test_promtool_accepts_the_config_and_its_rule_files():
    done = promtool("check", "config", CONFIG.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 rule files found" in done.stdout


@pytest.mark.prometheus
def test_promtool_accepts_the_rules():
    done = promtool("check", "rules", str(RULES.relative_to(DEPLOY)))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in done.stdout


@pytest.mark.prometheus
def test_the_alert_unit_tests_pass():
    done = promtool("test", "rules", TESTS.name)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_every_alert_is_tested_firing_and_quiet():
    fired, quiet = set(), set()
    for case in yaml.safe_load(TESTS.read_text())["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alerts()}
    assert names - fired == set(), "alerts no test sees firing"
    assert names - quiet == set(), "alerts no test sees quiet"


def test_every_alert_has_a_severity_and_a_summary():
    for rule in alerts():
        assert rule["labels"]["severity"] in ("critical", "warning", "info"), rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"], rule["alert"]


def test_every_metric_the_rules_and_their_tests_name_is_exported():
    exported = exported_series()
    named = set(METRIC_NAME.findall(RULES.read_text()))
    series = [entry["series"] for case in yaml.safe_load(TESTS.read_text())["tests"] for entry in case["input_series"]]
    named |= {re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", text).group() for text in series}
    assert named - PROMETHEUS_SERIES - exported == set()
    # The check itself sees the names it is meant to see.
    assert {"creditservice_http_responses_total", "creditservice_ledger_check_ok"} <= named


def test_the_scrape_config_loads_the_shipped_rules():
    config = yaml.safe_load(CONFIG.read_text())
    assert config["rule_files"] == ["rules/*.yml"]
    assert sorted(DEPLOY.glob("rules/*.yml")) == [RULES]
