"""Reads of the ledger: derived balances and the invariant check."""

from dataclasses import dataclass

from django.db.models import Sum

from .models import Account, Transfer


def derived_balance(account_id: int) -> int:
    """Micro-credits: everything credited to the account minus everything debited from it."""
    credited = Transfer.objects.filter(credit_account_id=account_id).aggregate(s=Sum("amount"))["s"] or 0
    debited = Transfer.objects.filter(debit_account_id=account_id).aggregate(s=Sum("amount"))["s"] or 0
    return credited - debited


def derived_balances() -> dict[int, int]:
    """Every account's balance from its transfers, in two grouped queries."""
    balances: dict[int, int] = {}
    for row in Transfer.objects.values("credit_account_id").annotate(s=Sum("amount")):
        balances[row["credit_account_id"]] = balances.get(row["credit_account_id"], 0) + row["s"]
    for row in Transfer.objects.values("debit_account_id").annotate(s=Sum("amount")):
        balances[row["debit_account_id"]] = balances.get(row["debit_account_id"], 0) - row["s"]
    return balances


def system_account_balance(code: str) -> int:
    return derived_balance(Account.objects.get(code=code).id)


@dataclass
class LedgerReport:
    drifts: list[str]
    wallets_checked: int
    total: int

    @property
    def ok(self) -> bool:
        return not self.drifts


def ledger_check() -> LedgerReport:
    """Each wallet's cached balance equals the sum of its transfers, and all accounts sum to zero."""
    derived = derived_balances()
    drifts: list[str] = []
    wallets = Account.objects.filter(kind=Account.Kind.WALLET).select_related("project")
    count = 0
    for wallet in wallets.iterator(chunk_size=2000):
        count += 1
        expected = derived.get(wallet.id, 0)
        if wallet.balance != expected:
            drifts.append(
                f"wallet of project {wallet.project.slug!r} (account {wallet.id}): cached balance "
                f"{wallet.balance} != {expected} from its transfers (micro-credits)"
            )
        if wallet.reserved < 0:
            drifts.append(f"wallet of project {wallet.project.slug!r}: reserved {wallet.reserved} is negative")
    # Wallets are counted by their cached balance so that cached drift shows in the total too.
    cached_total = sum(b for b in Account.objects.filter(kind=Account.Kind.WALLET).values_list("balance", flat=True))
    system_total = sum(v for k, v in derived.items() if k in set(
        Account.objects.filter(kind=Account.Kind.SYSTEM).values_list("id", flat=True)))
    total = cached_total + system_total
    if sum(derived.values()) != 0:
        drifts.append(f"transfers do not balance: accounts sum to {sum(derived.values())} micro-credits")
    if total != 0 and not drifts:
        drifts.append(f"accounts sum to {total} micro-credits, not zero")
    return LedgerReport(drifts=drifts, wallets_checked=count, total=total)


# Higher apps add their own invariants (for example: a wallet's reserved equals its pending holds)
# without this app importing them. Each check returns a list of drift descriptions.
extra_checks: list = []


def register_ledger_check(check):
    extra_checks.append(check)
    return check


def full_check() -> LedgerReport:
    report = ledger_check()
    for check in extra_checks:
        report.drifts.extend(check())
    return report
