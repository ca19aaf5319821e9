"""GET /metrics: Prometheus' text format, an optional bearer token, the per-scrape collectors, and the
infrastructure counters (a lost database, a broker that does not take a task)."""

import io

import pytest
from django.db import OperationalError
from django.test import Client
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from creditservice.lib.enqueue import enqueue
from quotas import selectors as quota_selectors
from quotas.tasks import expire_reservations
from quotas.tests.helpers import CHECK

METRICS = "/metrics"
PER_TENANT_LABELS = {"project", "project_id", "slug", "key", "api_key", "key_id", "wallet", "reservation", "user"}


def scrape(client=None, **headers) -> str:
    response = (client or Client()).get(METRICS, **headers)
    assert response.status_code == 200, response.content[:500]
    assert response["Content-Type"].startswith("text/plain; version=")
    return response.content.decode()


def families(text: str) -> dict:
    return {family.name: family for family in text_string_to_metric_families(text)}


class ExampleCollector:
    """A collector such as METRICS_SCRAPE_COLLECTORS lists (built once per scrape)."""

    built = 0

    def __init__(self):
        type(self).built += 1

    def collect(self):
        yield GaugeMetricFamily("creditservice_example_builds", "Times this collector was built.", value=self.built)


class BrokenCollector:
    def collect(self):
        raise OperationalError("the database went away")


def test_it_serves_the_text_format_with_the_admission_counter(db):
    text = scrape()
    assert "# TYPE creditservice_admission_decisions_total counter" in text
    assert 'creditservice_admission_decisions_total{result="allowed"}' in text
    assert "creditservice_reservations" in families(text)


def test_it_shows_a_count_made_through_the_api(platform, project):
    platform.post(CHECK, {"project": "acme", "resource_type": "vm", "quantity": "1", "amount": "1"}, format="json")
    allowed = REGISTRY.get_sample_value("creditservice_admission_decisions_total", {"result": "allowed"})
    assert f'creditservice_admission_decisions_total{{result="allowed"}} {allowed}' in scrape()


def test_no_label_names_a_tenant(db):
    labels = {name for family in families(scrape()).values() for sample in family.samples for name in sample.labels}
    assert not labels & PER_TENANT_LABELS, labels & PER_TENANT_LABELS


def test_with_a_token_a_scrape_without_it_is_refused(db, settings):
    settings.METRICS_TOKEN = "s3cret-token"
    for headers in ({}, {"HTTP_AUTHORIZATION": "Bearer wrong"}, {"HTTP_AUTHORIZATION": "Basic s3cret-token"}):
        response = Client().get(METRICS, **headers)
        assert response.status_code == 401
        assert response.json() == {"error": "unauthenticated", "detail": "send Authorization: Bearer <METRICS_TOKEN>"}
        assert response["WWW-Authenticate"].startswith("Bearer")
        assert "s3cret-token" not in response.content.decode()
    assert "creditservice_admission_decisions_total" in scrape(HTTP_AUTHORIZATION="Bearer s3cret-token")


def test_an_api_key_is_not_a_metrics_token(db, settings, platform):
    settings.METRICS_TOKEN = "s3cret-token"
    assert platform.get(METRICS).status_code == 401


def test_without_a_token_it_is_open_and_needs_no_api_key(db):
    assert "creditservice_" in scrape()


def test_only_get_is_served(db):
    response = Client().post(METRICS)
    assert response.status_code == 405 and response.json()["error"] == "method_not_allowed"


def test_it_is_not_in_the_api_schema(db, platform):
    schema = platform.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    assert not [path for path in schema["paths"] if "metrics" in path]


def test_it_works_through_the_wsgi_application_with_or_without_a_bearer_header(db, settings):
    # creditservice/wsgi.py sends Bearer calls on /api/ to a lean handler and the rest to the full one.
    from creditservice.wsgi import application

    settings.METRICS_TOKEN = "s3cret-token"
    for headers, status in (({"HTTP_AUTHORIZATION": "Bearer s3cret-token"}, "200 OK"), ({}, "401 Unauthorized")):
        answered = {}
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": METRICS, "SERVER_NAME": "testserver", "SERVER_PORT": "80",
                   "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(b""), **headers}
        body = b"".join(application(environ, lambda status, headers, *_: answered.update(status=status)))
        assert answered["status"] == status
        assert (b"creditservice_admission_decisions_total" in body) == (status == "200 OK")


def test_each_listed_collector_is_built_for_every_scrape(db, settings):
    settings.METRICS_SCRAPE_COLLECTORS = [f"{__name__}.ExampleCollector"]
    before = ExampleCollector.built
    scrape()
    text = scrape()
    assert ExampleCollector.built == before + 2
    assert families(text)["creditservice_example_builds"].samples[0].value == before + 2


def test_a_failing_collector_leaves_the_counters_served(db, settings):
    settings.METRICS_SCRAPE_COLLECTORS = [f"{__name__}.BrokenCollector", "no.such.Collector",
                                          f"{__name__}.ExampleCollector"]
    text = scrape()
    assert "creditservice_admission_decisions_total" in text and "creditservice_example_builds" in text


def test_a_lost_database_answered_503_is_counted(platform, project, monkeypatch):
    def lost(**kwargs):
        raise OperationalError("server closed the connection unexpectedly")

    monkeypatch.setattr(quota_selectors, "admission_check", lost)
    before = REGISTRY.get_sample_value("creditservice_database_errors_total")
    response = platform.post(CHECK, {"project": "acme", "resource_type": "vm", "quantity": "1", "amount": "1"},
                             format="json")
    assert response.status_code == 503 and response.json()["error"] == "database_unavailable"
    assert REGISTRY.get_sample_value("creditservice_database_errors_total") == before + 1


@pytest.mark.django_db
def test_a_task_the_broker_did_not_take_is_counted(settings, monkeypatch):
    from billing.tests.test_faults_broker_down import broker_at, closed_port

    before = REGISTRY.get_sample_value("creditservice_broker_errors_total")
    with broker_at(f"redis://127.0.0.1:{closed_port()}/0", settings, monkeypatch):
        assert enqueue(expire_reservations) is False
    assert REGISTRY.get_sample_value("creditservice_broker_errors_total") == before + 1
