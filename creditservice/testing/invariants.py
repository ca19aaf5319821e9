"""The invariants of the books, asserted at the end of the proof tests (model-based, concurrency, faults).

    from creditservice.testing.invariants import assert_books_balance
    assert_books_balance()  # raises AssertionError naming every drift

I1  each wallet's cached balance equals the sum of its transfers;
I2  no available balance went below zero through a hold or a debit: for each wallet,
    balance - reserved + (the credits its overdrawing transfers out took: usage charges, refunds) >= 0;
I3  the sum over all accounts is zero;
I4  each wallet's and each quota's reserved equals what its pending reservations hold.

The checks themselves are the ledger's own (wallets.selectors, quotas.selectors): the nightly check and
`manage.py check_ledger` run the same code, so a test and production cannot disagree on what drift is.
"""

from django.db.models import Q, Sum

from quotas.selectors import holds_match_pending_reservations
from wallets.models import Account, Transfer
from wallets.selectors import ledger_check

# Transfers out of a wallet that may take available below zero: usage already happened, a refund
# already left the card. A hold or a debit must never do it.
_OVERDRAWING = (Transfer.Kind.USAGE, Transfer.Kind.REFUND)


def _overdrafts() -> list[str]:
    overdrawn = {row["debit_account_id"]: row["s"] for row in Transfer.objects.filter(kind__in=_OVERDRAWING)
                 .values("debit_account_id").annotate(s=Sum("amount"))}
    drifts = []
    for wallet in Account.objects.filter(Q(kind=Account.Kind.WALLET)).values("id", "project__slug", "balance", "reserved"):
        available = wallet["balance"] - wallet["reserved"]
        if available + overdrawn.get(wallet["id"], 0) < 0:
            drifts.append(f"I2: wallet of project {wallet['project__slug']!r}: available {available} is below zero by more "
                          f"than its usage charges and refunds took ({overdrawn.get(wallet['id'], 0)} micro-credits)")
    return drifts


def books_drifts() -> list[str]:
    """Every drift from I1–I4, each naming the wallet, quota or reservation; empty when the books balance."""
    return ledger_check().drifts + _overdrafts() + holds_match_pending_reservations()


def assert_books_balance() -> None:
    """Raise AssertionError naming every drift from I1–I4 (see the module docstring)."""
    drifts = books_drifts()
    assert not drifts, "the books do not balance:\n" + "\n".join(drifts)
