"""Every answer shows the project's state after its own effect: a credit that reactivates a project
answers "active", a debit that leaves it unfunded answers "grace"."""

from billing.models import ProjectStatusChange
from billing.services.lifecycle import project_enter_grace
from creditservice.lib.money import credits_to_micros
from wallets import ledger
from wallets.models import Project, Transfer

WALLET = "/api/v1/projects/acme/wallet"


def overdrawn(project) -> None:
    """A usage charge took acme below zero and the lifecycle put it into grace."""
    ledger.transfer(project=project, direction="out", system_code="revenue", amount=credits_to_micros("101"),
                    kind=Transfer.Kind.USAGE, idempotency_key="usage-1")
    project_enter_grace(project_id=project.id)
    assert Project.objects.get(id=project.id).status == "grace"


def test_a_credit_that_reactivates_answers_active(platform, project):
    overdrawn(project)
    response = platform.post_idem(f"{WALLET}/credit", {"amount": "5", "reason": "top up"})
    assert response.status_code == 201, response.json()
    assert (response.json()["status"], response.json()["available"]) == ("active", "4")
    assert platform.get(WALLET).json()["status"] == "active"
    assert Project.objects.get(id=project.id).status == "active"


def test_a_replayed_credit_answers_as_the_first_did(platform, project):
    overdrawn(project)
    first = platform.post_idem(f"{WALLET}/credit", {"amount": "5", "reason": "top up"}, key="k1")
    again = platform.post_idem(f"{WALLET}/credit", {"amount": "5", "reason": "top up"}, key="k1")
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json() and again.json()["status"] == "active"


def test_a_credit_that_does_not_fund_leaves_grace_and_says_so(platform, project):
    overdrawn(project)
    response = platform.post_idem(f"{WALLET}/credit", {"amount": "0.5", "reason": "partial"})
    assert (response.json()["status"], response.json()["available"]) == ("grace", "-0.5")


def test_a_debit_that_leaves_nothing_available_answers_grace(platform, project):
    response = platform.post_idem(f"{WALLET}/debit", {"amount": "100", "reason": "take it all"})
    assert response.status_code == 201, response.json()
    assert (response.json()["status"], response.json()["available"]) == ("grace", "0")
    change = ProjectStatusChange.objects.get(project=project)
    assert (change.from_status, change.to_status) == ("active", "grace")
    assert "refund or debit" in change.reason
