"""The API against its own schema: requests generated from /api/schema/ by schemathesis.

Every operation is called with a platform key, with acme's scoped key and with no key; the requests are
valid ones (positive) and ones the schema forbids (negative). Each answer must be documented for its
operation and conform to it: no 5xx, a documented status code and content type, a body that matches the
documented schema, and a request the schema forbids is refused (4xx). So a client generated from the schema
works, and what the API answers is what the schema says.

The calls go through the production WSGI app (creditservice.wsgi: bearer calls take the lean handler) in
the test's own transaction, rolled back at the end as every other test's. Examples per operation for each
caller and mode: FUZZ_EXAMPLES, or 10 under CI (60 per operation in all) and 3 otherwise; `make fuzz` runs
100 (600 per operation) with a random seed (FUZZ_RANDOM=1) where the suite's runs are the same every time.
A failure names the operation and the check, and prints the request as a curl command that replays it.
"""

import functools
import os
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections
from django.test import Client
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import Failure, FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from creditservice.testing.fixtures import ServiceClient
from creditservice.testing.routes import api_routes
from creditservice.wsgi import application
from quotas.selectors import clear_caches
from wallets.tests.factories import ProjectFactory, platform_key, scoped_key

pytestmark = pytest.mark.django_db

CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES") or (10 if CI else 3))
RANDOM = os.environ.get("FUZZ_RANDOM", "") == "1"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# A usage batch answers 200 with each invalid event rejected on its own (metering/tests cover the reasons),
# so a batch holding an event the schema forbids is not refused as a whole.
PER_ITEM_ANSWERS = {"POST /api/v1/usage/events"}


@contextmanager
def connection_kept() -> Iterator[None]:
    """A call straight into the WSGI app keeps the test's connection (and so its transaction) open.

    Django closes a connection at the start and end of every request whose autocommit is not the default,
    which inside the test's transaction marks it broken; the test client disconnects the same two signals
    for each of its requests (and connects them again after, so this is done per call too).
    """
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        signals.request_started.connect(close_old_connections)
        signals.request_finished.connect(close_old_connections)


@pytest.fixture
def world(fake_stripe) -> dict:
    """acme (funded, one pending reservation) and beta; the keys of each kind of caller."""
    clear_caches()
    acme = ProjectFactory(slug="acme", balance="1000")
    ProjectFactory(slug="beta", balance="10")
    platform = platform_key()
    reservation = ServiceClient(platform).post_idem(
        "/api/v1/reservations", {"project": "acme", "resource_type": "vm", "quantity": "1", "amount": "1"})
    assert reservation.status_code == 201, reservation.content
    yield {
        "callers": {"platform": f"Bearer {platform}", "scoped": f"Bearer {scoped_key(acme)}", "none": None},
        "reservation": reservation.json()["id"],
    }
    clear_caches()


@functools.cache
def _schema():
    """The schema as the API serves it (GET /api/schema/), once per run."""
    with connection_kept():
        return schemathesis.openapi.from_wsgi("/api/schema/", application)


def _documented_operations() -> set[str]:
    return {result.ok().label for result in _schema().get_all_operations()}


def test_the_schema_documents_every_api_operation_and_says_how_each_can_fail():
    # From the URL conf, so a new endpoint cannot be left out of the schema (and so out of this fuzzing).
    routed = set()
    for route in api_routes():
        if route.methods is None or not route.path.startswith("api/v1/"):
            continue  # the Stripe webhook (a function view), the schema and its docs page
        path = "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route.path)
        routed |= {f"{method} {path}" for method in route.methods}
    assert routed == _documented_operations()
    document = Client().get("/api/schema/", HTTP_ACCEPT="application/json").json()
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            codes = set(operation["responses"])
            assert {"400", "401", "403", "404", "503"} <= codes, (method, path)
            if "requestBody" in operation:
                assert {"413", "415"} <= codes, (method, path)
                body = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
                assert document["components"]["schemas"][body]["additionalProperties"] is False, body
            for code, answer in operation["responses"].items():
                if int(code) >= 400:
                    assert answer["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Error"}
            assert operation["security"] == [{"apiKey": []}], (method, path)  # no session cookie for clients


@pytest.mark.parametrize("caller", ["platform", "scoped", "none"])
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_every_answer_is_documented_and_conforms(world, caller, mode):
    schema = _schema()
    headers = {"Authorization": world["callers"][caller]} if world["callers"][caller] else {}
    failures: dict[tuple, str] = {}
    calls: Counter[str] = Counter()
    for result in schema.get_all_operations():
        operation = result.ok()
        known = {}
        if "{slug}" in operation.path:
            known["slug"] = "acme"
        if "{reservation_id}" in operation.path:
            known["reservation_id"] = world["reservation"]
        strategy = st.one_of(
            operation.as_strategy(generation_mode=mode, path_parameters=known),
            operation.as_strategy(generation_mode=mode),
        )

        @settings(max_examples=EXAMPLES, deadline=None, database=None, derandomize=not RANDOM,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=strategy)
        def run(case):
            case.headers = {**(case.headers or {}), **headers}
            if "Authorization" not in headers and case.headers:
                case.headers.pop("Authorization", None)
            with connection_kept():
                response = case.call()
            calls[operation.label] += 1
            negative = mode == GenerationMode.NEGATIVE and operation.label not in PER_ITEM_ANSWERS
            checks = CHECKS + ([negative_data_rejection] if negative else [])
            try:
                case.validate_response(response, checks=checks)
            except (Failure, FailureGroup) as exc:
                for failure in getattr(exc, "exceptions", [exc]):
                    seen = (operation.label, failure.title, failure.message.split("\n")[0])
                    if seen not in failures:
                        failures[seen] = (f"{caller} {mode.value} {operation.label}: {failure.title}\n{failure.message}\n"
                                          f"{response.status_code} {response.text[:300]}\n{case.as_curl_command()}")

        run()
    assert set(calls) == _documented_operations(), "an operation was never called"
    assert not failures, "\n\n".join(list(failures.values())[:60]) + f"\n\n{len(failures)} distinct failures"
