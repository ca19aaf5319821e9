"""The ledger's bounds: no transfer, hold or batch takes a balance past ±MAX_BALANCE_MICROS or moves
more than MAX_AMOUNT_MICROS at once, so no arithmetic on a wallet ever leaves its 64-bit column."""

import pytest

from creditservice.lib.errors import AmountLimitExceeded, BalanceLimitExceeded
from creditservice.lib.money import MAX_AMOUNT_MICROS
from wallets import ledger
from wallets.ledger import MAX_BALANCE_MICROS
from wallets.models import Account, Transfer
from wallets.selectors import ledger_check
from wallets.tests.factories import ProjectFactory

pytestmark = pytest.mark.django_db

INT64_MAX = 2**63 - 1


def _credit(project, amount: int, key: str):
    return ledger.transfer(project=project, direction="in", system_code="adjustments", amount=amount, kind="credit",
                           idempotency_key=key)


def _charge(project, amount: int, key: str):
    return ledger.transfer(project=project, direction="out", system_code="revenue", amount=amount, kind="usage",
                           idempotency_key=key)


def _balance(project) -> int:
    return Account.objects.get(project=project).balance


def test_the_bounds_leave_room_in_a_signed_64_bit_column():
    # A balance at the bound plus the largest single amount, and the worst commit (-2 × MAX), still fit.
    assert MAX_BALANCE_MICROS + MAX_AMOUNT_MICROS <= INT64_MAX
    assert 2 * MAX_BALANCE_MICROS <= INT64_MAX


def test_a_credit_up_to_the_balance_bound_is_taken_and_one_past_it_is_refused_writing_nothing():
    acme = ProjectFactory(slug="acme")
    for step in range(4):
        _credit(acme, MAX_AMOUNT_MICROS, f"c{step}")
    assert _balance(acme) == MAX_BALANCE_MICROS
    transfers = Transfer.objects.count()
    with pytest.raises(BalanceLimitExceeded) as refused:
        _credit(acme, 1, "one-more")
    assert refused.value.status_code == 422 and refused.value.code == "balance_limit_exceeded"
    assert _balance(acme) == MAX_BALANCE_MICROS
    assert Transfer.objects.count() == transfers
    assert ledger_check().ok


def test_a_charge_may_overdraw_down_to_the_negative_bound_only():
    acme = ProjectFactory(slug="acme")
    for step in range(4):
        _charge(acme, MAX_AMOUNT_MICROS, f"u{step}")
    assert _balance(acme) == -MAX_BALANCE_MICROS
    with pytest.raises(BalanceLimitExceeded):
        _charge(acme, 1, "u-more")
    assert _balance(acme) == -MAX_BALANCE_MICROS
    # A credit brings it back: the bound is one-sided in the direction a transfer moves.
    _credit(acme, 5, "back")
    assert _balance(acme) == -MAX_BALANCE_MICROS + 5
    assert ledger_check().ok


def test_one_transfer_or_hold_larger_than_one_amount_is_refused():
    acme = ProjectFactory(slug="acme", balance="100")
    with pytest.raises(AmountLimitExceeded):
        _credit(acme, MAX_AMOUNT_MICROS + 1, "huge")
    with pytest.raises(AmountLimitExceeded):
        # Larger than a 64-bit integer: refused before it reaches the database driver.
        _charge(acme, 10**30, "absurd")
    with pytest.raises(AmountLimitExceeded):
        ledger.hold(wallet_id=acme.wallet.id, amount=MAX_AMOUNT_MICROS + 1)
    assert not Transfer.objects.filter(idempotency_key__in=["huge", "absurd"]).exists()
    wallet = Account.objects.get(project=acme)
    assert (wallet.balance, wallet.reserved) == (100_000_000, 0)


def test_a_commit_of_a_hold_is_not_refused_by_the_bound():
    # Admission took the hold while the wallet covered it; a charge that overdrew since must not strand it.
    acme = ProjectFactory(slug="acme", balance="100")
    wallet_id = acme.wallet.id
    assert ledger.hold(wallet_id=wallet_id, amount=100_000_000) is not None
    for step in range(4):
        _charge(acme, MAX_AMOUNT_MICROS, f"u{step}")
    balance = _balance(acme)
    assert balance == 100_000_000 - MAX_BALANCE_MICROS
    ledger.commit_hold(project_id=acme.id, wallet_id=wallet_id, held=100_000_000, amount=100_000_000,
                       kind=Transfer.Kind.RESERVATION, idempotency_key="commit")
    wallet = Account.objects.get(project=acme)
    assert (wallet.balance, wallet.reserved) == (-MAX_BALANCE_MICROS, 0)
    assert ledger_check().ok


def _batch(direction: str, transfers: list[ledger.BulkTransfer]):
    return ledger.transfer_many(transfers=transfers, direction=direction, system_code="revenue",
                                kind=Transfer.Kind.USAGE if direction == "out" else Transfer.Kind.REVERSAL)


def test_a_batch_that_would_take_one_wallet_past_the_bound_fails_whole_and_names_it():
    acme, beta = ProjectFactory(slug="acme"), ProjectFactory(slug="beta", balance="1")
    for step in range(4):
        _charge(acme, MAX_AMOUNT_MICROS, f"u{step}")
    transfers = Transfer.objects.count()
    with pytest.raises(BalanceLimitExceeded) as refused:
        _batch("out", [ledger.BulkTransfer(acme.id, 1, "b-acme"), ledger.BulkTransfer(beta.id, 1, "b-beta")])
    assert refused.value.extra["projects"] == [acme.id]
    assert Transfer.objects.count() == transfers
    assert (_balance(acme), _balance(beta)) == (-MAX_BALANCE_MICROS, 1_000_000)
    # The other project alone goes through (billing retries a failed batch project by project).
    _batch("out", [ledger.BulkTransfer(beta.id, 1, "b-beta")])
    assert _balance(beta) == 999_999
    assert ledger_check().ok


def test_a_batch_credit_past_the_bound_fails_whole():
    acme = ProjectFactory(slug="acme")
    for step in range(4):
        _credit(acme, MAX_AMOUNT_MICROS, f"c{step}")
    with pytest.raises(BalanceLimitExceeded):
        _batch("in", [ledger.BulkTransfer(acme.id, 1, "r1")])
    assert _balance(acme) == MAX_BALANCE_MICROS
    assert not Transfer.objects.filter(idempotency_key="r1").exists()


def test_a_batch_amount_or_sum_beyond_the_bounds_is_refused_before_any_sql():
    acme = ProjectFactory(slug="acme")
    with pytest.raises(AmountLimitExceeded) as refused:
        _batch("out", [ledger.BulkTransfer(acme.id, 10**30, "x1")])
    assert refused.value.extra["projects"] == [acme.id]
    with pytest.raises(BalanceLimitExceeded):
        # Five amounts at the bound: their sum alone is past what one batch may move a wallet.
        _batch("out", [ledger.BulkTransfer(acme.id, MAX_AMOUNT_MICROS, f"s{i}") for i in range(5)])
    assert _balance(acme) == 0
    assert not Transfer.objects.filter(idempotency_key__in=["x1", "s0", "s1", "s2", "s3", "s4"]).exists()
