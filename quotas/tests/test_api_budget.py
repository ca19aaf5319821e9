"""GET/PUT /projects/{slug}/budget: spend this month = committed + charged + live pending holds."""

from creditservice.testing.fixtures import ServiceClient
from quotas import selectors
from quotas.models import Budget
from quotas.tests.helpers import commit, reserve
from wallets import ledger
from wallets.models import Transfer
from wallets.tests.factories import scoped_key

BUDGET = "/api/v1/projects/acme/budget"


def test_without_a_budget_it_says_so(platform, project):
    body = platform.get(BUDGET).json()
    assert body["hard_limit"] is None and body["project"] == "acme"
    assert selectors.budget_status(project) is None


def test_platform_sets_a_budget_and_sees_the_spend(platform, project):
    response = platform.put(BUDGET, {"hard_limit": "50", "soft_limit": "20"}, format="json")
    assert response.status_code == 200, response.json()
    commit(platform, reserve(platform, amount="15").json()["id"])
    reserve(platform, amount="6")
    ledger.transfer(project=project, direction="out", system_code="revenue", amount=1_000_000, kind=Transfer.Kind.USAGE,
                    idempotency_key="usage-1")
    body = platform.get(BUDGET).json()
    assert (body["hard_limit"], body["soft_limit"], body["spent"], body["remaining"]) == ("50", "20", "22", "28")
    assert body["soft_limit_reached"] is True
    assert body["period_start"].endswith("-01T00:00:00Z")
    status = selectors.budget_status(project)
    assert (status.hard_limit, status.spent) == (50_000_000, 22_000_000)


def test_a_partial_commit_counts_only_what_was_charged(platform, project):
    platform.put(BUDGET, {"hard_limit": "50"}, format="json")
    commit(platform, reserve(platform, amount="40").json()["id"], amount="5")
    assert platform.get(BUDGET).json()["spent"] == "5"
    assert reserve(platform, amount="45").status_code == 201


def test_removing_the_budget(platform, project):
    platform.put(BUDGET, {"hard_limit": "50"}, format="json")
    assert platform.put(BUDGET, {"hard_limit": None}, format="json").json()["hard_limit"] is None
    assert not Budget.objects.exists()


def test_bad_budgets_are_400(platform, project):
    for body in ({"hard_limit": "-1"}, {"hard_limit": "10", "soft_limit": "11"}, {}, {"hard_limit": 1.5}):
        assert platform.put(BUDGET, body, format="json").status_code == 400, body
    assert not Budget.objects.exists()


def test_a_scoped_key_reads_but_cannot_set_the_budget(project):
    client = ServiceClient(scoped_key(project))
    assert client.get(BUDGET).status_code == 200
    assert client.put(BUDGET, {"hard_limit": "1000"}, format="json").status_code == 403
    assert not Budget.objects.exists()
