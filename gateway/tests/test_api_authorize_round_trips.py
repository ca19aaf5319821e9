"""What one authorize costs the database: an allowed metered call on PostgreSQL is the API key lookup
(which also reads the project) and one call of the charge function, with or without a budget; and
the answers of that one call (budget, refusal, replay) are the statement-by-statement path's."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from creditservice.lib.money import credits_to_micros
from gateway import fastpath
from gateway.models import GatewayCharge
from quotas.services import budget_set
from wallets import ledger
from wallets.ledger import functions
from wallets.models import GrantDraw, Transfer
from wallets.tests.factories import ProjectFactory, scoped_key

from .helpers import authorize, metered_route, wallet_of

pytestmark = pytest.mark.django_db(transaction=True)
postgresql_only = pytest.mark.skipif(connection.vendor != "postgresql", reason="the one-call charge is PostgreSQL's")


def _warm(client, key) -> None:
    """One call first: the route table and the system account's id are cached per process."""
    assert authorize(client, key).status_code == 204


def _charged(client, key, **kwargs):
    with CaptureQueriesContext(connection) as queries:
        response = authorize(client, key, **kwargs)
    return response, [query["sql"] for query in queries.captured_queries]


@postgresql_only
def test_an_allowed_call_is_the_key_lookup_and_one_call_of_the_charge_function(client):
    acme = ProjectFactory(slug="acme", balance="10")
    key = scoped_key(acme)
    metered_route("/v1/")
    _warm(client, key)
    response, sql = _charged(client, key)
    assert response.status_code == 204
    assert response["X-Credits-Charged"] == "1" and response["X-Credits-Available"] == "8"
    assert len(sql) == 2, sql
    assert fastpath.authorize_function()[0] in sql[1]
    charge = GatewayCharge.objects.latest("id")
    usage = Transfer.objects.get(idempotency_key=f"v1:gateway:{charge.id}")
    assert usage.amount == credits_to_micros("1") and usage.wallet_balance_after == credits_to_micros("8")
    assert sum(GrantDraw.objects.filter(transfer=usage).values_list("amount", flat=True)) == credits_to_micros("1")


@postgresql_only
def test_with_a_budget_an_allowed_call_costs_no_more(client):
    acme = ProjectFactory(slug="acme", balance="10")
    budget_set(project_id=acme.id, hard_limit=credits_to_micros("5"), soft_limit=None)
    key = scoped_key(acme)
    metered_route("/v1/")
    _warm(client, key)
    response, sql = _charged(client, key)
    assert response.status_code == 204 and len(sql) == 2, sql


def test_a_call_over_the_budget_is_refused_and_writes_nothing(client):
    acme = ProjectFactory(slug="acme", balance="10")
    budget_set(project_id=acme.id, hard_limit=credits_to_micros("2"), soft_limit=None)
    key = scoped_key(acme)
    metered_route("/v1/")
    assert [authorize(client, key).status_code for _ in range(3)] == [204, 204, 403]
    refused = authorize(client, key)
    assert refused["X-Credits-Error"] == "budget_exceeded"
    assert refused.json()["spent"] == "2" and refused.json()["limit"] == "2"
    assert GatewayCharge.objects.count() == 2
    assert wallet_of(acme) == (credits_to_micros("8"), 0)


def test_a_refused_call_writes_nothing_and_a_replay_is_not_charged(client):
    acme = ProjectFactory(slug="acme", balance="1")
    key = scoped_key(acme)
    metered_route("/v1/")
    assert authorize(client, key, request_id="a").status_code == 204
    replay = authorize(client, key, request_id="a")
    assert replay.status_code == 204 and replay["X-Credits-Replayed"] == "true"
    refused = authorize(client, key, request_id="b")
    assert refused["X-Credits-Error"] == "insufficient_credits"
    assert GatewayCharge.objects.count() == 1
    assert Transfer.objects.filter(project=acme, kind=Transfer.Kind.USAGE).count() == 1
    assert authorize(client, key, request_id="a", uri="/v1/other")["X-Credits-Error"] == "request_id_reused"


@postgresql_only
def test_the_charge_function_exists_under_the_name_the_code_computes():
    # migrate (re)creates it from the code, so a change of the ledger's rules can never run old SQL.
    with connection.cursor() as cursor:
        cursor.execute("SELECT proname FROM pg_proc WHERE proname = ANY(%s)",
                       [[fastpath.authorize_function()[0], ledger.functions.charge_function()[0]]])
        assert len(cursor.fetchall()) == 2


@postgresql_only
def test_before_migrate_created_the_function_calls_are_charged_statement_by_statement(client, monkeypatch):
    # A worker running code newer than the database's function finds no function of its name.
    monkeypatch.setattr(functions, "installed", lambda *args, **kwargs: False)
    acme = ProjectFactory(slug="acme", balance="2")
    key = scoped_key(acme)
    metered_route("/v1/")
    assert [authorize(client, key).status_code for _ in range(3)] == [204, 204, 403]
    assert wallet_of(acme) == (0, 0)
    usage = Transfer.objects.filter(project=acme, kind=Transfer.Kind.USAGE)
    assert sum(GrantDraw.objects.filter(transfer__in=usage).values_list("amount", flat=True)) == credits_to_micros("2")
