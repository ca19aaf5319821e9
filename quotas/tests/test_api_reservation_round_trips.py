"""What a reserve and a commit cost the database on PostgreSQL: the API key lookup and one call of the
reserve or commit function (quotas/services/functions.py), which looks the project up too; and every answer
of that one call is the statement-by-statement path's (SQLite's, and PostgreSQL's before `migrate`
created the functions), refusals and replays included."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from creditservice.lib.money import credits_to_micros, format_micros, format_micros_sql
from creditservice.testing.fixtures import ServiceClient
from quotas.models import Reservation
from quotas.services import budget_set, functions
from wallets import services as wallet_services
from wallets.ledger import functions as ledger_functions
from wallets.models import Grant, GrantDraw, Project, Transfer
from wallets.tests.factories import ProjectFactory, platform_key, scoped_key

from .helpers import commit, quota_of, reserve, set_quota, units

pytestmark = pytest.mark.django_db(transaction=True)
postgresql_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="the functions are PostgreSQL's")


@pytest.fixture(params=["one call", "statements"])
def path(request, monkeypatch) -> str:
    """Both ways of running reserve and commit; on SQLite only the statements."""
    if request.param == "one call":
        if connection.vendor != "postgresql":
            pytest.skip("the functions are PostgreSQL's")
    else:
        monkeypatch.setattr(functions, "enabled", lambda: False)
    return request.param


@pytest.fixture
def client() -> ServiceClient:
    return ServiceClient(platform_key())


def _sql(call) -> tuple:
    with CaptureQueriesContext(connection) as queries:
        response = call()
    return response, [query["sql"] for query in queries.captured_queries]


@postgresql_only
def test_a_reserve_is_the_key_lookup_and_one_call_and_so_is_a_commit(client):
    ProjectFactory(slug="acme", balance="100")
    # A first pair fills the process caches: resource type ids, the revenue account's id.
    assert commit(client, reserve(client).json()["id"]).status_code == 200
    response, sql = _sql(lambda: reserve(client))
    assert response.status_code == 201, response.json()
    assert len(sql) == 2, "\n".join(sql)
    assert functions.reserve_function()[0] in sql[1]
    response, sql = _sql(lambda: commit(client, response.json()["id"]))
    assert response.status_code == 200 and response.json()["status"] == "committed"
    assert len(sql) == 2, "\n".join(sql)
    assert functions.commit_function()[0] in sql[1]


@postgresql_only
def test_the_functions_exist_under_the_names_the_code_computes():
    # migrate (re)creates them from the code, so a change of the rules can never run old SQL.
    names = [functions.reserve_function()[0], functions.commit_function()[0]]
    with connection.cursor() as cursor:
        cursor.execute("SELECT proname FROM pg_proc WHERE proname = ANY(%s)", [names])
        assert len(cursor.fetchall()) == 2
    assert functions.enabled()


def test_a_reserve_and_its_commit(client, path):
    acme = ProjectFactory(slug="acme", balance="100")
    held = reserve(client, quantity="1.5", amount="10")
    assert held.status_code == 201, held.json()
    body = held.json()
    assert (body["status"], body["amount"], body["quantity"]) == ("pending", "10", "1.5")
    wallet = acme.wallet
    wallet.refresh_from_db()
    assert (wallet.balance, wallet.reserved) == (credits_to_micros("100"), credits_to_micros("10"))
    assert quota_of(acme, "vm").reserved == units("1.5")
    done = commit(client, body["id"], amount="4")
    assert done.status_code == 200, done.json()
    assert (done.json()["status"], done.json()["committed_amount"]) == ("committed", "4")
    wallet.refresh_from_db()
    assert (wallet.balance, wallet.reserved) == (credits_to_micros("96"), 0)
    quota = quota_of(acme, "vm")
    assert (quota.reserved, quota.used) == (0, units("1.5"))
    charge = Transfer.objects.get(reference=f"reservation:{body['id']}")
    assert (charge.kind, charge.amount, charge.reason) == (Transfer.Kind.RESERVATION, credits_to_micros("4"), "1.5 vm")
    assert charge.idempotency_key == f"v1:reservation:{body['id']}:commit"
    assert charge.wallet_balance_after == credits_to_micros("96") and charge.actor
    assert sum(GrantDraw.objects.filter(transfer=charge).values_list("amount", flat=True)) == credits_to_micros("4")
    again = commit(client, body["id"], amount="4")
    assert again.status_code == 200 and again.json() == done.json()
    assert commit(client, body["id"], amount="5").json()["error"] == "reservation_committed"
    assert Transfer.objects.filter(reference=f"reservation:{body['id']}").count() == 1


def test_a_commit_of_nothing_gives_the_hold_back(client, path):
    acme = ProjectFactory(slug="acme", balance="100")
    body = reserve(client, amount="10").json()
    done = commit(client, body["id"], amount="0")
    assert done.status_code == 200, done.json()
    wallet = acme.wallet
    wallet.refresh_from_db()
    assert (wallet.balance, wallet.reserved) == (credits_to_micros("100"), 0)
    assert not Transfer.objects.filter(reference=f"reservation:{body['id']}").exists()
    assert quota_of(acme, "vm").used == units("1")


def test_a_replay_is_the_first_answer_and_another_body_is_422(client, path):
    ProjectFactory(slug="acme", balance="100")
    first = reserve(client, key="k1")
    replay = reserve(client, key="k1")
    assert replay.status_code == 201 and replay["Idempotent-Replayed"] == "true"
    assert replay.json() == first.json()
    assert reserve(client, key="k1", amount="11").status_code == 422
    assert Reservation.objects.count() == 1


def test_the_refusals_write_nothing_and_say_the_same(client, path):
    acme = ProjectFactory(slug="acme", balance="10")
    refused = reserve(client, amount="11")
    assert refused.status_code == 402
    assert refused.json() == {"error": "insufficient_credits", "detail": refused.json()["detail"],
                              "available": "10", "requested": "11"}
    set_quota(acme, "vm", "2")
    over = reserve(client, quantity="3", amount="1")
    assert over.status_code == 409 and over.json()["error"] == "quota_exceeded"
    assert (over.json()["limit"], over.json()["used"], over.json()["requested"]) == ("2", "0", "3")
    budget_set(project_id=acme.id, hard_limit=credits_to_micros("5"), soft_limit=None)
    assert reserve(client, amount="5").status_code == 201
    budget = reserve(client, amount="1")
    assert budget.status_code == 402 and budget.json()["error"] == "budget_exceeded"
    assert (budget.json()["limit"], budget.json()["spent"], budget.json()["available"]) == ("5", "5", "0")
    Project.objects.filter(id=acme.id).update(status=Project.Status.SUSPENDED)
    suspended = reserve(client, amount="1")
    assert suspended.status_code == 403 and suspended.json()["error"] == "project_suspended"
    assert Reservation.objects.count() == 1
    wallet = acme.wallet
    wallet.refresh_from_db()
    assert wallet.reserved == credits_to_micros("5")
    assert quota_of(acme, "vm").reserved == units("1")


def test_an_unknown_project_or_another_projects_is_404_and_writes_nothing(client, path):
    ProjectFactory(slug="acme", balance="10")
    other = ProjectFactory(slug="other", balance="10")
    unknown = reserve(client, project="nope")
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found", unknown.json()
    scoped = ServiceClient(scoped_key(other))
    hidden = reserve(scoped, project="acme")
    assert hidden.status_code == 404 and hidden.json() == {**unknown.json(), "detail": "no project 'acme'"}
    assert reserve(scoped, project="other").status_code == 201
    assert Reservation.objects.count() == 1


def test_an_hourly_cost_holds_the_minimum_runtime(client, path):
    ProjectFactory(slug="acme", balance="100")
    held = reserve(client, amount=None, hourly_cost="2")
    assert held.status_code == 201, held.json()
    assert held.json()["amount"] == str(2 * settings.MIN_RUNTIME_HOURS)


def test_a_first_reservation_over_the_default_limit_is_refused(client, path):
    from quotas.models import QuotaDefault, ResourceType

    QuotaDefault.objects.update_or_create(resource_type=ResourceType.objects.get(code="vm"),
                                          defaults={"limit": units("2")})
    ProjectFactory(slug="acme", balance="10")
    over = reserve(client, quantity="3", amount="1")
    assert over.status_code == 409
    assert (over.json()["limit"], over.json()["used"], over.json()["reserved"]) == ("2", "0", "0")


def test_credits_of_another_type_or_expiring_first_do_not_cover_it(client, path):
    acme = ProjectFactory(slug="acme")
    grant = {"project": acme, "category": "promotional", "reason": "test", "actor": "staff"}
    wallet_services.grant_create(amount=credits_to_micros("5"), idempotency_key="gpu", resource_types=["gpu"], **grant)
    refused = reserve(client, amount="1")
    assert refused.status_code == 402 and refused.json()["available"] == "0"
    wallet_services.grant_create(amount=credits_to_micros("5"), idempotency_key="soon",
                                 expires_at=timezone.now() + timedelta(seconds=60), **grant)
    assert reserve(client, amount="1", ttl_seconds=10).status_code == 201
    assert reserve(client, amount="1", ttl_seconds=3600).status_code == 402
    held = reserve(client, amount="4", ttl_seconds=10)
    assert held.status_code == 201, held.json()
    assert commit(client, held.json()["id"]).status_code == 200
    soon = Grant.objects.get(source_transfer__idempotency_key="soon")
    assert soon.remaining == credits_to_micros("1")  # the 4 drawn from the vm credits, not the gpu ones


@postgresql_only
def test_the_reason_is_written_as_format_micros_writes_it():
    values = [1, 9, 10, 999_999, 1_000_000, 1_500_000, 1_000_001, 12_345_678_901, 10**18 - 1, 10**18]
    with connection.cursor() as cursor:
        for value in values:
            cursor.execute(f"SELECT {format_micros_sql('%s::bigint')}", [value])
            assert cursor.fetchone()[0] == format_micros(value), value


@postgresql_only
def test_before_migrate_created_the_functions_the_statements_run(client, monkeypatch):
    # A worker running code newer than the database finds no function of its name.
    monkeypatch.setattr(ledger_functions, "installed", lambda *args, **kwargs: False)
    ProjectFactory(slug="acme", balance="100")
    response, sql = _sql(lambda: reserve(client))
    assert response.status_code == 201 and not any("quotas_reserve_" in text for text in sql)
