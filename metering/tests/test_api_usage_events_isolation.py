"""A usage batch is answered per event: an event the database cannot store is rejected, the rest taken."""

import json
import uuid
from datetime import timedelta

import pytest
from django.db import DataError
from django.db.models import Sum
from django.utils import timezone

from creditservice.lib.money import MAX_QUANTITY_MICROS
from metering import ingest
from metering.models import UsageEvent, UsageRecord
from metering.tests.factories import units
from metering.windows import window_start_of

URL = "/api/v1/usage/events"
# The quantity bound in the form callers send (10^12 units).
MAX = "1000000000000"


STAMP = ""


@pytest.fixture(autouse=True)
def _one_window():
    """Every event of a test in one window, even when the test runs across a window's end."""
    global STAMP
    STAMP = window_start_of(timezone.now() - timedelta(minutes=1)).isoformat()


def event(event_id: str | None = None, quantity: str = "0.25", **fields) -> dict:
    return {"id": event_id or str(uuid.uuid4()), "project": "acme", "resource_type": "vm", "quantity": quantity,
            "timestamp": STAMP, **fields}


def push(client, *events):
    return client.post(URL, {"events": list(events)}, format="json")


def recorded(resource_type: str = "vm") -> int:
    return UsageRecord.objects.filter(project__slug="acme", resource_type__code=resource_type,
                                      source="push").aggregate(total=Sum("quantity"))["total"] or 0


def by_id(body: dict) -> dict[str, dict]:
    return {r["id"]: r for r in body["results"]}


def test_good_events_are_stored_beside_a_nul_id_a_giant_quantity_and_a_window_overflow(platform, project):
    push(platform, event("big-1", quantity=MAX))  # the window's record is at the bound already
    response = push(platform,
                    event("good-1", quantity="1", resource_type="storage_gib"),
                    event("nul\x00id", quantity="1"),
                    event("giant", quantity="1" + "0" * 59),
                    event("over", quantity="0.000001"),  # 10^12 + 10^-6 in the window: past the bound
                    event("good-2", quantity="2", resource_type="storage_gib"))

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["accepted"], body["duplicate"], body["rejected"]) == (2, 0, 3)
    results = by_id(body)
    assert results["good-1"]["status"] == results["good-2"]["status"] == "accepted"
    assert results["nul\x00id"]["reason"] == "invalid_event" and "U+0000" in results["nul\x00id"]["detail"]
    assert results["giant"]["reason"] == "invalid_event" and "at most" in results["giant"]["detail"]
    assert results["over"]["reason"] == "window_total_too_large"
    assert recorded("storage_gib") == units("3")
    assert recorded("vm") == MAX_QUANTITY_MICROS
    assert set(UsageEvent.objects.values_list("event_id", flat=True)) == {"big-1", "good-1", "good-2"}


@pytest.mark.parametrize("field", ["id", "project", "resource_type"])
@pytest.mark.parametrize("bad", ["\x00", "\ud800", "a\nb"])
def test_a_control_character_or_a_lone_surrogate_is_that_events_rejection(platform, project, field, bad):
    value = {"id": f"e-{bad}", "project": f"ac{bad}me", "resource_type": f"v{bad}m"}[field]
    # As a client sends it: json.dumps writes a lone surrogate as the escape "\\ud800".
    response = platform.post(URL, json.dumps({"events": [event("fine"), event("broken", **{field: value})]}),
                             content_type="application/json")
    assert response.status_code == 200
    statuses = [(r["status"], r.get("reason")) for r in response.json()["results"]]
    assert statuses == [("accepted", None), ("rejected", "invalid_event")]
    assert "control characters" in response.json()["results"][1]["detail"]
    assert recorded() == units("0.25")


def test_events_that_would_take_a_window_past_the_bound_are_rejected_the_rest_added(platform, project):
    body = push(platform, event("a", quantity="600000000000"), event("b", quantity="600000000000"),
                event("c", quantity="400000000000")).json()
    statuses = {r["id"]: (r["status"], r.get("reason")) for r in body["results"]}
    # Events are taken in id order: a, then b would pass 10^12 (rejected), then c fits.
    assert statuses == {"a": ("accepted", None), "b": ("rejected", "window_total_too_large"),
                        "c": ("accepted", None)}
    assert recorded() == MAX_QUANTITY_MICROS
    assert not UsageEvent.objects.filter(event_id="b").exists()
    # Rejected means not stored: once the window has room (another window), a resend is taken.
    again = push(platform, event("b", quantity="600000000000",
                                 timestamp=(timezone.now() - timedelta(hours=2)).isoformat())).json()
    assert again["results"][0]["status"] == "accepted"


def test_a_copy_of_a_rejected_event_in_the_same_batch_is_rejected_with_it(platform, project):
    push(platform, event("full", quantity=MAX))
    body = push(platform, event("x", quantity="1"), event("x", quantity="1")).json()
    assert [(r["status"], r.get("reason")) for r in body["results"]] == [
        ("rejected", "window_total_too_large"), ("rejected", "window_total_too_large")]
    assert body["rejected"] == 2 and body["duplicate"] == 0


def test_a_value_the_database_still_refuses_rejects_only_that_event(platform, project, monkeypatch):
    real = ingest._store

    def store(events, **kwargs):
        if any(e.event_id == "poison" for e in events):
            raise DataError("value out of range")
        return real(events, **kwargs)

    monkeypatch.setattr(ingest, "_store", store)
    response = push(platform, event("one", quantity="1"), event("poison"), event("two", quantity="2"))
    assert response.status_code == 200
    results = by_id(response.json())
    assert results["poison"]["status"] == "rejected" and "cannot be stored" in results["poison"]["detail"]
    assert results["one"]["status"] == results["two"]["status"] == "accepted"
    assert recorded() == units("3")


def test_an_unknown_field_named_with_a_lone_surrogate_is_that_events_rejection(platform, project):
    body = json.dumps({"events": [event("fine"), {**event("odd"), "\ud800\x00": "1"}]})
    response = platform.post(URL, body, content_type="application/json")
    assert response.status_code == 200
    odd = response.json()["results"][1]
    assert (odd["status"], odd["reason"]) == ("rejected", "invalid_event")
    assert odd["detail"] == "unknown field \\ud800\\x00"
