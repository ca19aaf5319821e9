"""The invariants of the books, asserted at the end of the proof tests (model-based, concurrency, faults).

    from creditservice.testing.invariants import assert_books_balance
    assert_books_balance()  # raises AssertionError naming every drift

I1  each wallet's cached balance equals the sum of its transfers;
I2  no available balance went below zero through a hold or a debit. Provable from the books alone:
    a hold or a debit is taken only while available covers it, a commit charges at most what it
    holds and a release only frees, so only the transfers out that may overdraw (usage charges and
    refunds: wallets.selectors.OVERDRAWING_KINDS) can take available below zero, by at most what they
    moved. For each wallet: balance - reserved + (the sum of those transfers out of it) >= 0. A test
    that knows its sequence (the model-based test) asserts the exact figures on top of this;
I3  the sum over all accounts is zero (wallets by their cached balance, system accounts by their
    transfers);
I4  each wallet's reserved equals the amounts its pending reservations hold, and each quota's
    reserved the quantities (and no pending hold lacks its quota row);
I5  each wallet's credit grants hold max(balance, 0) between them (wallets.selectors.grant_sum_drifts).

The checks are the ledger's own (wallets.selectors.ledger_check: I1-I3, quotas.selectors: I4), run
in one read snapshot; the nightly check and `manage.py check_ledger` run the same code, so a test and
production cannot disagree on what a drift is. Unlike check_ledger, this leaves out the operational
warning about holds long past their expiry: a test that travels in time may leave such holds on
purpose, and they break no invariant of the books.
"""

from quotas.selectors import holds_match_pending_reservations
from wallets.selectors import ledger_check, read_snapshot


def books_drifts() -> list[str]:
    """Every drift from I1–I4, each naming its wallet, quota or reservation; empty when the books balance."""
    with read_snapshot():
        return ledger_check().drifts + holds_match_pending_reservations()


def assert_books_balance() -> None:
    """Raise AssertionError naming every drift from I1–I4 (see the module docstring)."""
    drifts = books_drifts()
    assert not drifts, f"the books do not balance ({len(drifts)} drifts):\n" + "\n".join(drifts)
