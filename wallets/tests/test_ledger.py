"""wallets.ledger: the one module that moves credits, and the invariants it keeps."""

import itertools

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import IntegrityError, transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from creditservice.lib.errors import InsufficientCredits
from wallets import ledger
from wallets.models import Account, Transfer
from wallets.selectors import ledger_check, system_account_balance
from wallets.tests.factories import ProjectFactory


def test_a_credit_moves_credits_from_a_system_account_to_the_wallet(project):
    transfer, created = ledger.transfer(project=project, direction="in", system_code="promotions", amount=5,
                                        kind="promotion", idempotency_key="p1")
    assert created
    assert transfer.credit_account == project.wallet
    assert transfer.debit_account.code == "promotions"
    assert transfer.wallet_balance_after == 100_000_005
    assert system_account_balance("promotions") == -5
    assert ledger_check().ok


def test_the_same_idempotency_key_moves_credits_once(project):
    first, created = ledger.transfer(project=project, direction="out", system_code="revenue", amount=7,
                                     kind="usage", idempotency_key="once")
    again, created_again = ledger.transfer(project=project, direction="out", system_code="revenue", amount=7,
                                           kind="usage", idempotency_key="once")
    assert (created, created_again) == (True, False)
    assert again.id == first.id
    project.wallet.refresh_from_db()
    assert project.wallet.balance == 100_000_000 - 7


def test_a_funds_checked_debit_never_overdraws(project):
    with pytest.raises(InsufficientCredits):
        ledger.transfer(project=project, direction="out", system_code="adjustments", amount=100_000_001,
                        kind="debit", idempotency_key="big", require_funds=True)
    assert not Transfer.objects.filter(idempotency_key="big").exists()
    project.wallet.refresh_from_db()
    assert project.wallet.balance == 100_000_000


def test_usage_charges_may_overdraw_because_the_usage_already_happened(project):
    ledger.transfer(project=project, direction="out", system_code="revenue", amount=150_000_000,
                    kind="usage", idempotency_key="u")
    project.wallet.refresh_from_db()
    assert project.wallet.balance == -50_000_000
    assert ledger_check().ok


def test_holds_reduce_available_and_never_take_it_below_zero(project):
    wallet_id = project.wallet.id
    assert ledger.hold(wallet_id=wallet_id, amount=60_000_000).available == 40_000_000
    assert ledger.hold(wallet_id=wallet_id, amount=40_000_001) is None
    assert ledger.release(wallet_id=wallet_id, amount=60_000_000).available == 100_000_000


def test_the_database_refuses_a_non_positive_transfer(project):
    wallet = project.wallet
    revenue = Account.objects.get(code="revenue")
    with pytest.raises(IntegrityError), transaction.atomic():
        Transfer.objects.create(project=project, debit_account=wallet, credit_account=revenue, amount=0,
                                kind="usage", idempotency_key="zero", wallet_balance_after=0)


def test_funded_hooks_run_after_commit_with_the_project(project, django_capture_on_commit_callbacks):
    seen = []
    ledger._funded_hooks.append(seen.append)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            ledger.transfer(project=project, direction="in", system_code="stripe", amount=1, kind="top_up",
                            idempotency_key="hook")
    finally:
        ledger._funded_hooks.remove(seen.append)
    assert seen == [project.id]


_examples = itertools.count()
operations = st.lists(
    st.tuples(
        st.sampled_from(["credit", "debit", "charge", "hold", "release", "replay"]),
        st.integers(min_value=0, max_value=2),
        st.integers(min_value=1, max_value=50_000_000),
    ),
    max_size=40,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations)
def test_any_sequence_of_movements_keeps_the_books_balanced(db, ops):
    """A model of three wallets against the real ledger: balances, holds and the invariants agree."""
    # Each example gets fresh projects and keys; earlier examples' rows stay and must stay balanced too.
    run = next(_examples)
    projects = [ProjectFactory(slug=f"ex{run}-p{i}") for i in range(3)]
    model = {i: {"balance": 0, "reserved": 0} for i in range(3)}
    holds: dict[int, list[int]] = {i: [] for i in range(3)}
    credited_keys: list[str] = []
    for n, (op, i, amount) in enumerate(ops):
        project, state = projects[i], model[i]
        available = state["balance"] - state["reserved"]
        if op == "credit":
            ledger.transfer(project=project, direction="in", system_code="adjustments", amount=amount,
                            kind="credit", idempotency_key=f"ex{run}:k{n}")
            state["balance"] += amount
        elif op == "debit":
            try:
                ledger.transfer(project=project, direction="out", system_code="adjustments", amount=amount,
                                kind="debit", idempotency_key=f"ex{run}:k{n}", require_funds=True)
                assert amount <= available
                state["balance"] -= amount
            except InsufficientCredits:
                assert amount > available
        elif op == "charge":
            ledger.transfer(project=project, direction="out", system_code="revenue", amount=amount,
                            kind="usage", idempotency_key=f"ex{run}:k{n}")
            state["balance"] -= amount
        elif op == "hold":
            result = ledger.hold(wallet_id=project.wallet.id, amount=amount)
            assert (result is not None) == (amount <= available)
            if result is not None:
                state["reserved"] += amount
                holds[i].append(amount)
        elif op == "release" and holds[i]:
            ledger.release(wallet_id=project.wallet.id, amount=holds[i].pop())
            state["reserved"] = sum(holds[i])
        elif op == "replay" and credited_keys:
            # A retried credit with an old key, even with another amount, is never a second effect.
            _, created = ledger.transfer(project=project, direction="in", system_code="adjustments",
                                         amount=amount, kind="credit", idempotency_key=credited_keys[0])
            assert not created
        if op == "credit":
            credited_keys.append(f"ex{run}:k{n}")
    for i, project in enumerate(projects):
        project.wallet.refresh_from_db()
        assert (project.wallet.balance, project.wallet.reserved) == (model[i]["balance"], model[i]["reserved"])
    report = ledger_check()
    assert report.ok, report.drifts
    assert report.total == 0


def test_check_ledger_passes_on_balanced_books(project, capsys):
    call_command("check_ledger")
    assert "ledger ok" in capsys.readouterr().out


def test_check_ledger_names_a_wallet_whose_cached_balance_drifted(project, capsys):
    Account.objects.filter(id=project.wallet.id).update(balance=99)  # what a stray UPDATE would do
    with pytest.raises(CommandError):
        call_command("check_ledger")
    err = capsys.readouterr().err
    assert "acme" in err and "99" in err
