"""A budget counts net spend: usage given back by billing (a credit-back) is no longer spent."""

from quotas.tests.helpers import reserve
from wallets import ledger
from wallets.models import Transfer

BUDGET = "/api/v1/projects/acme/budget"


def _charge(project, micros: int, key: str) -> None:
    ledger.transfer(project=project, direction="out", system_code="revenue", amount=micros, kind=Transfer.Kind.USAGE,
                    idempotency_key=key, reason="usage charge", reference="charge")


def _credit_back(project, micros: int, key: str) -> None:
    # What billing writes when a window's usage came back lower (billing/services/charging.py).
    ledger.transfer(project=project, direction="in", system_code="revenue", amount=micros, kind=Transfer.Kind.REVERSAL,
                    idempotency_key=key, reason="usage credit-back", reference="charge")


def test_usage_credit_backs_are_not_counted_as_spend(platform, project):
    platform.put(BUDGET, {"hard_limit": "1"}, format="json")
    _charge(project, 800_000, "usage-1")
    _credit_back(project, 760_000, "usage-1:back")
    assert platform.get(BUDGET).json()["spent"] == "0.04"
    response = reserve(platform, amount="0.5")
    assert response.status_code == 201, response.json()
    assert platform.get(BUDGET).json()["spent"] == "0.54"


def test_a_credit_back_from_elsewhere_is_not_a_credit_back_of_usage(platform, project):
    platform.put(BUDGET, {"hard_limit": "1"}, format="json")
    _charge(project, 800_000, "usage-1")
    ledger.transfer(project=project, direction="in", system_code="adjustments", amount=760_000,
                    kind=Transfer.Kind.REVERSAL, idempotency_key="staff-correction")
    assert platform.get(BUDGET).json()["spent"] == "0.8"
    assert reserve(platform, amount="0.5").json()["error"] == "budget_exceeded"


def test_net_spend_never_goes_below_zero(platform, project):
    platform.put(BUDGET, {"hard_limit": "1"}, format="json")
    _credit_back(project, 760_000, "last-month:back")
    assert platform.get(BUDGET).json()["spent"] == "0"
    assert reserve(platform, amount="1.5").json()["error"] == "budget_exceeded"
