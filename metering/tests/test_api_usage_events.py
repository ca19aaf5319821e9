"""POST /api/v1/usage/events: every event counted once, bad events refused one by one."""

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from django.db.models import Sum
from django.utils import timezone

from creditservice.testing.fixtures import ServiceClient
from metering.models import UsageEvent, UsageRecord
from metering.tests.factories import units
from metering.windows import window_bounds
from wallets.tests.factories import ProjectFactory, member, scoped_key

URL = "/api/v1/usage/events"


def at(delta: timedelta = timedelta()) -> str:
    return (timezone.now() + delta).isoformat()


def event(event_id: str | None = None, project: str = "acme", resource_type: str = "vm", quantity: str = "0.25",
          timestamp: str | None = None) -> dict:
    return {"id": event_id or str(uuid.uuid4()), "project": project, "resource_type": resource_type,
            "quantity": quantity, "timestamp": timestamp or at(-timedelta(minutes=1))}


def push(client, *events):
    return client.post(URL, {"events": list(events)}, format="json")


def recorded(project="acme", resource_type="vm") -> int:
    return UsageRecord.objects.filter(project__slug=project, resource_type__code=resource_type,
                                      source="push").aggregate(total=Sum("quantity"))["total"] or 0


def test_accepted_events_are_added_to_the_usage_of_their_window(platform, project):
    stamp = timezone.now() - timedelta(minutes=1)
    response = push(platform, event("e1", quantity="0.25", timestamp=stamp.isoformat()),
                    event("e2", quantity="0.5", timestamp=stamp.isoformat()))
    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["accepted"], body["duplicate"], body["rejected"]) == (2, 0, 0)
    assert body["results"] == [{"id": "e1", "status": "accepted"}, {"id": "e2", "status": "accepted"}]
    record = UsageRecord.objects.get(project=project, source="push")
    assert record.quantity == units("0.75")
    assert (record.window_start, record.window_end) == window_bounds(stamp)
    assert UsageEvent.objects.get(event_id="e1").window_start == record.window_start


def test_a_duplicate_inside_one_batch_is_counted_once(platform, project):
    body = push(platform, event("same", quantity="1"), event("same", quantity="1"), event("other", quantity="2")).json()
    assert [r["status"] for r in body["results"]] == ["accepted", "duplicate", "accepted"]
    assert recorded() == units("3")


def test_a_resent_batch_is_all_duplicates_and_charges_nothing_more(platform, project):
    batch = [event("a", quantity="1"), event("b", quantity="2")]
    push(platform, *batch)
    again = push(platform, *batch).json()
    assert (again["accepted"], again["duplicate"]) == (0, 2)
    assert recorded() == units("3")


def test_an_event_stored_last_week_is_still_a_duplicate(platform, project, settings):
    settings.USAGE_LATENESS_HOURS = 24 * 8
    push(platform, event("old", timestamp=at(-timedelta(days=7))))
    assert push(platform, event("old", timestamp=at(-timedelta(days=7)))).json()["results"][0]["status"] == "duplicate"
    assert UsageEvent.objects.count() == 1


def test_event_ids_are_unique_per_project_not_globally(platform, project):
    ProjectFactory(slug="beta")
    body = push(platform, event("shared"), event("shared", project="beta")).json()
    assert body["accepted"] == 2


def test_good_events_in_a_mixed_batch_are_taken_and_bad_ones_get_reasons(platform, project):
    body = push(
        platform,
        event("good", quantity="1"),
        event("nobody", project="no-such-project"),
        event("typo", resource_type="vmm"),
        event("future", timestamp=at(timedelta(minutes=6))),
        event("stale", timestamp=at(-timedelta(hours=49))),
        event("float", quantity=0.25),
        event("negative", quantity="-1"),
        event("precise", quantity="0.0000001"),
        event("naive", timestamp="2026-11-22T03:00:00"),
        {"id": "extra", "project": "acme", "resource_type": "vm", "quantity": "1", "timestamp": at(), "note": "x"},
        "not an object",
    ).json()
    reasons = [(r["id"], r["status"], r.get("reason")) for r in body["results"]]
    assert reasons == [
        ("good", "accepted", None),
        ("nobody", "rejected", "unknown_project"),
        ("typo", "rejected", "unknown_resource_type"),
        ("future", "rejected", "timestamp_in_future"),
        ("stale", "rejected", "timestamp_too_old"),
        ("float", "rejected", "invalid_event"),
        ("negative", "rejected", "invalid_event"),
        ("precise", "rejected", "invalid_event"),
        ("naive", "rejected", "invalid_event"),
        ("extra", "rejected", "invalid_event"),
        (None, "rejected", "invalid_event"),
    ]
    assert (body["accepted"], body["rejected"]) == (1, 10)
    assert "must be a decimal string such as" in body["results"][5]["detail"]
    assert recorded() == units("1")
    assert UsageEvent.objects.count() == 1


def test_a_few_minutes_in_the_future_is_tolerated(platform, project):
    assert push(platform, event(timestamp=at(timedelta(minutes=4)))).json()["accepted"] == 1


def test_a_late_event_for_an_already_recorded_window_is_added_and_moves_updated_at(platform, project):
    stamp = at(-timedelta(hours=3))
    push(platform, event("first", quantity="1", timestamp=stamp))
    before = UsageRecord.objects.get(project=project).updated_at
    push(platform, event("late", quantity="0.5", timestamp=stamp))
    record = UsageRecord.objects.get(project=project)
    assert record.quantity == units("1.5")
    assert record.updated_at > before


def test_egress_is_pushed_in_gib(platform, project):
    push(platform, event(resource_type="network_egress_gib", quantity="12.5"))
    assert recorded(resource_type="network_egress_gib") == units("12.5")


def test_a_project_key_reports_only_its_own_project(project):
    ProjectFactory(slug="beta")
    client = ServiceClient(scoped_key(project))
    body = push(client, event("mine"), event("theirs", project="beta")).json()
    assert [(r["status"], r.get("reason")) for r in body["results"]] == [("accepted", None), ("rejected", "unknown_project")]
    # Refused exactly like a project that does not exist: the other project's existence is not revealed.
    assert body["results"][1]["detail"] == "no project 'beta'"
    assert recorded(project="beta") == 0


def test_a_signed_in_member_cannot_push_usage(project):
    client = ServiceClient()
    client.force_login(member(project))
    assert push(client, event()).status_code == 403


def test_anonymous_callers_are_refused(anonymous, project):
    assert push(anonymous, event()).status_code == 401


@pytest.mark.parametrize("body", [{}, {"events": []}, {"events": "x"}, {"events": [], "more": 1}, ["x"]])
def test_a_malformed_envelope_is_400_and_writes_nothing(platform, project, body):
    response = platform.post(URL, body, format="json")
    assert response.status_code == 400
    assert response.json()["error"] == "validation_error"


def test_more_than_1000_events_is_400_and_writes_nothing(platform, project):
    response = push(platform, *[event() for _ in range(1001)])
    assert response.status_code == 400
    assert not UsageEvent.objects.exists()


def test_a_full_batch_of_1000_is_taken(platform, project):
    body = push(platform, *[event(f"e{i}", quantity="0.001") for i in range(1000)]).json()
    assert body["accepted"] == 1000
    assert recorded() == units("1")


@pytest.mark.django_db(transaction=True)
def test_twenty_parallel_senders_of_overlapping_batches_count_each_event_once(platform):
    from django.db import connection

    ProjectFactory(slug="acme")
    ProjectFactory(slug="beta")
    stamp = timezone.now() - timedelta(minutes=1)
    earlier = stamp - timedelta(hours=2)
    # 600 distinct events over two projects, two types and two windows; each sender sends an
    # overlapping slice of 200 in its own order, so every event is sent by several senders at once.
    events = [
        event(f"ev-{i}", project=("acme", "beta")[i % 2], resource_type=("vm", "storage_gib")[i % 3 == 0],
              quantity=f"0.{i % 7 + 1:06d}", timestamp=(stamp if i % 5 else earlier).isoformat())
        for i in range(600)
    ]
    raw_key = platform._credentials["HTTP_AUTHORIZATION"].split()[1]

    def send(sender: int) -> dict:
        try:
            batch = [events[(sender * 30 + j) % 600] for j in range(200)]
            if sender % 2:
                batch.reverse()
            response = ServiceClient(raw_key).post(URL, {"events": batch}, format="json")
            assert response.status_code == 200, response.content
            return response.json()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(send, range(20)))
    accepted_ids = [r["id"] for a in answers for r in a["results"] if r["status"] == "accepted"]
    assert len(accepted_ids) == len(set(accepted_ids))  # no event accepted twice
    sent_ids = {events[(s * 30 + j) % 600]["id"] for s in range(20) for j in range(200)}
    assert set(accepted_ids) == sent_ids
    assert UsageEvent.objects.count() == len(sent_ids)
    # Each window's record is the sum of its distinct events.
    for record in UsageRecord.objects.all():
        expected = UsageEvent.objects.filter(project=record.project_id, resource_type=record.resource_type_id,
                                             window_start=record.window_start).aggregate(s=Sum("quantity"))["s"]
        assert record.quantity == expected
    assert UsageRecord.objects.aggregate(s=Sum("quantity"))["s"] == sum(
        units(e["quantity"]) for e in events if e["id"] in sent_ids)
