"""The billing batch and grants scoped to resource types: each usage charge draws from the grants of
its own type first; a charge beyond them (usage cannot be refused) takes from the other grants, so
the grants still hold the wallet's balance between them."""

import pytest

from creditservice.lib.money import credits_to_micros
from wallets import services
from wallets.models import Grant, GrantDraw
from wallets.selectors import ledger_check
from wallets.tests.factories import ProjectFactory

from .conftest import WINDOW
from .factories import balance, bill, usage

pytestmark = pytest.mark.django_db

_keys = iter(range(10**9))


def _grant(project, credits: str, **terms) -> Grant:
    return services.grant_create(project=project, category="promotional", amount=credits_to_micros(credits),
                                 reason="test", actor="system", idempotency_key=f"bill-scope-{next(_keys)}", **terms)


def _drawn_by_type(project) -> dict[str, list[tuple[int, int]]]:
    """{resource type code: [(grant id, micro-credits)]} of the project's usage charges."""
    out: dict[str, list[tuple[int, int]]] = {}
    draws = GrantDraw.objects.filter(grant__wallet__project=project, transfer__kind="usage").order_by("id")
    for draw in draws.select_related("transfer"):
        code = draw.transfer.idempotency_key.split(":")[3]  # v1:billing:{project}:{type}:{window}
        out.setdefault(code, []).append((draw.grant_id, draw.amount))
    return out


def test_usage_of_two_types_draws_each_from_its_own_grants(clock):
    acme = ProjectFactory(slug="acme", balance="1")  # granted, priority 20, every type
    gpu = _grant(acme, "5", resource_types=["gpu"])  # priority 10: first in the plain order
    beta = ProjectFactory(slug="beta", balance="1")
    beta_gpu = _grant(beta, "5", resource_types=["gpu"])
    usage(acme, "vm", WINDOW, "3")  # 0.12
    usage(acme, "gpu", WINDOW, "1")  # 1.2
    usage(beta, "vm", WINDOW, "1")  # 0.04

    assert bill(WINDOW).run.charges_created == 3

    acme_granted = Grant.objects.get(wallet__project=acme, category="granted")
    assert _drawn_by_type(acme) == {"vm": [(acme_granted.id, credits_to_micros("0.12"))],
                                    "gpu": [(gpu.id, credits_to_micros("1.2"))]}
    beta_granted = Grant.objects.get(wallet__project=beta, category="granted")
    assert _drawn_by_type(beta) == {"vm": [(beta_granted.id, credits_to_micros("0.04"))]}
    beta_gpu.refresh_from_db()
    assert beta_gpu.remaining == credits_to_micros("5")
    assert ledger_check().ok


def test_usage_beyond_the_credits_of_its_type_takes_from_other_grants(clock):
    acme = ProjectFactory(slug="acme", balance="0.1")
    gpu = _grant(acme, "5", resource_types=["gpu"])
    usage(acme, "vm", WINDOW, "3")  # 0.12: 0.1 of its own, then 0.02 of the gpu credits
    usage(acme, "gpu", WINDOW, "1")  # 1.2, drawn before the vm charge spills over

    bill(WINDOW)

    granted = Grant.objects.get(wallet__project=acme, category="granted")
    assert _drawn_by_type(acme) == {"gpu": [(gpu.id, credits_to_micros("1.2"))],
                                    "vm": [(granted.id, credits_to_micros("0.1")), (gpu.id, credits_to_micros("0.02"))]}
    gpu.refresh_from_db()
    assert gpu.remaining == balance(acme) == credits_to_micros("3.78")
    assert ledger_check().ok
