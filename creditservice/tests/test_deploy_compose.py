"""docker-compose.yml and gunicorn, read as files (no Docker engine): the services a deployment needs, the
environment they pass is what the app reads (and carries what production requires), Prometheus mounts
the shipped config and scrapes the port the web app listens on, and gunicorn kills a request before its
idempotency key counts as abandoned."""

import re
import runpy
from pathlib import Path

import pytest
import yaml
from django.conf import settings
from django.urls import resolve

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
APP_SERVICES = ("migrate", "web", "grpc", "worker", "beat")
# What a production deployment cannot leave out (settings.py falls back to development values without
# them), and the operations settings this file must let an operator set.
REQUIRED = {"DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "DATABASE_URL", "CELERY_BROKER_URL", "SITE_URL",
            "METRICS_TOKEN", "LOG_FORMAT", "API_RATE_LIMIT"}
# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}
INTERPOLATION = re.compile(r"\$\{(\w+)(?:(:?[-?])([^}]*))?\}")


def services() -> dict:
    return yaml.safe_load(COMPOSE.read_text())["services"]


def interpolated(value: str, environment: dict[str, str]) -> str:
    """A compose value as docker compose fills it in from the shell's environment."""
    def fill(match: re.Match) -> str:
        name, operator, default = match.groups()
        given = environment.get(name)
        if operator and operator.startswith(":") and not given:
            given = None
        if given is None and operator and operator.endswith("?"):
            raise ValueError(f"{name} is required: {default}")
        return given if given is not None else (default or "")
    return INTERPOLATION.sub(fill, value)


def read_by_the_app() -> set[str]:
    """Variables settings.py reads through env.* and those scripts/gunicorn.conf.py reads."""
    names = set(re.findall(r"""env\.\w+\(\s*["']([A-Z][A-Z0-9_]*)["']""", (ROOT / "creditservice" / "settings.py").read_text()))
    names |= set(re.findall(r"""os\.environ\.get\(\s*["']([A-Z][A-Z0-9_]*)["']""", (ROOT / "scripts" / "gunicorn.conf.py").read_text()))
    return names


def web_port() -> int:
    return int(services()["web"]["environment"]["PORT"])


def test_the_production_shape_has_every_service():
    assert {"web", "grpc", "worker", "beat", "postgres", "redis", "prometheus"} <= set(services())


@pytest.mark.parametrize("service", APP_SERVICES)
def test_every_variable_an_app_service_passes_is_read_by_the_app(service):
    passed = set(services()[service]["environment"])
    assert passed - read_by_the_app() == set()


@pytest.mark.parametrize("service", APP_SERVICES)
def test_every_app_service_passes_what_production_requires(service):
    assert REQUIRED - set(services()[service]["environment"]) == set()


def test_the_check_of_read_variables_sees_the_settings():
    assert {"SECRET_KEY", "METRICS_TOKEN", "METRICS_PORT", "LOG_FORMAT", "API_RATE_LIMIT", "HOST", "PORT",
            "GRPC_HOST", "GRPC_PORT"} <= read_by_the_app()


def test_the_grpc_service_serves_on_all_interfaces_and_its_healthcheck_asks_its_port():
    grpc = services()["grpc"]
    port = int(grpc["environment"]["GRPC_PORT"])
    assert grpc["environment"]["GRPC_HOST"] == "0.0.0.0"
    assert grpc["ports"] == [f"{port}:{port}"]
    assert grpc["command"].split()[-1] == "grpc_serve"
    assert (ROOT / "quotas" / "management" / "commands" / "grpc_serve.py").is_file()
    test = " ".join(grpc["healthcheck"]["test"])
    assert f"'127.0.0.1:{port}'" in test and "HealthCheckRequest" in test


def test_prometheus_mounts_the_shipped_config_and_is_pinned():
    prometheus = services()["prometheus"]
    image, _, tag = prometheus["image"].partition(":")
    assert image == "prom/prometheus" and re.fullmatch(r"v\d+\.\d+\.\d+", tag)
    mounts = {source: target.split(":")[0] for source, _, target in (v.partition(":") for v in prometheus["volumes"])}
    assert mounts["./deploy/prometheus"] == "/etc/prometheus"
    config_flag = next(arg for arg in prometheus["command"] if arg.startswith("--config.file="))
    config_in_container = config_flag.split("=", 1)[1]
    assert config_in_container.startswith("/etc/prometheus/")
    assert (ROOT / "deploy" / "prometheus" / config_in_container.removeprefix("/etc/prometheus/")).is_file()


def scrape_targets() -> dict[str, list[str]]:
    config = yaml.safe_load((ROOT / "deploy" / "prometheus" / "prometheus.yml").read_text())
    return {job["job_name"]: [t for static in job["static_configs"] for t in static["targets"]]
            for job in config["scrape_configs"]}


def test_prometheus_scrapes_the_web_service_on_the_port_it_listens_on():
    assert scrape_targets()["creditservice-web"] == [f"web:{web_port()}"]
    assert services()["web"]["ports"] == [f"{web_port()}:{web_port()}"]
    assert services()["web"]["environment"]["HOST"] == "0.0.0.0"
    assert resolve("/metrics").url_name == "metrics"


def test_prometheus_scrapes_the_worker_on_its_metrics_port():
    port = services()["worker"]["environment"]["METRICS_PORT"]
    assert scrape_targets()["creditservice-worker"] == [f"worker:{port}"]


@pytest.mark.parametrize("operator_hosts", [None, "billing.example.com"])
def test_the_scrape_and_the_healthcheck_hosts_are_allowed_whatever_the_operator_sets(operator_hosts):
    environment = {"ALLOWED_HOSTS": operator_hosts} if operator_hosts else {}
    hosts = interpolated(services()["web"]["environment"]["ALLOWED_HOSTS"], environment).split(",")
    assert {"web", "127.0.0.1"} <= set(hosts)
    if operator_hosts:
        assert operator_hosts in hosts


def test_the_web_healthcheck_asks_readyz_on_the_web_port():
    test = " ".join(services()["web"]["healthcheck"]["test"])
    url = re.search(r"http://127\.0\.0\.1:(\d+)(/\S*?)'", test)
    assert url and int(url.group(1)) == web_port()
    assert resolve(url.group(2)).url_name == "readyz"


def test_a_missing_secret_key_stops_compose():
    with pytest.raises(ValueError, match="SECRET_KEY"):
        interpolated(services()["web"]["environment"]["SECRET_KEY"], {})


@pytest.mark.parametrize("lock_seconds", [None, "60", "20", "5", "2"])
def test_gunicorn_kills_a_request_before_its_idempotency_key_counts_as_abandoned(monkeypatch, tmp_path, lock_seconds):
    # The config sets PROMETHEUS_MULTIPROC_DIR by default: given here, so this process keeps its own.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    if lock_seconds is None:
        monkeypatch.delenv("IDEMPOTENCY_LOCK_TIMEOUT_SECONDS", raising=False)
        lock = settings.IDEMPOTENCY_LOCK_TIMEOUT.total_seconds()
    else:
        monkeypatch.setenv("IDEMPOTENCY_LOCK_TIMEOUT_SECONDS", lock_seconds)
        lock = int(lock_seconds)
    config = runpy.run_path(str(ROOT / "scripts" / "gunicorn.conf.py"))
    assert 0 < config["timeout"] < lock
    assert config["workers"] >= 2
