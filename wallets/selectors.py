"""Reads of the ledger: a wallet's figures as callers see them, derived balances and the invariant check."""

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from django.db import connection, transaction
from django.db.models import Q, Sum
from django.utils import timezone

from creditservice.lib.queries import db_datetime

from .ledger.grants import scope_needle, unspendable, unspendable_sql
from .models import Account, Grant, Transfer

# --- A wallet as every reader shows it ---------------------------------------------------------
# A hold past its expiry still counts in Account.reserved until the expiry task (every minute)
# releases it, while admission already treats it as freed. quotas, which owns the holds, registers a
# reader of those overdue holds here, so the wallet API, the portal, the admin and the lifecycle show
# the same reserved and available as admission, without this app importing quotas.
# reader(project_ids, now) -> {project_id: micro-credits held by pending holds past expires_at}
OverdueHoldsReader = Callable[[list[int], datetime], dict[int, int]]
_overdue_hold_readers: list[OverdueHoldsReader] = []


def register_overdue_holds(reader: OverdueHoldsReader) -> OverdueHoldsReader:
    _overdue_hold_readers.append(reader)
    return reader


@dataclass(frozen=True)
class WalletFigures:
    """Micro-credits. reserved: held by live holds only (an overdue hold is already freed).
    unspendable: the rest of grants past expires_at (expired at once for every reader, before the
    expiry task moves it) or not effective yet; part of the balance until then, never of available."""

    balance: int
    reserved: int
    unspendable: int = 0

    @property
    def available(self) -> int:
        return self.balance - self.reserved - self.unspendable


def wallet_figures(wallets: Iterable[Account], *, now: datetime | None = None) -> dict[int, WalletFigures]:
    """Each wallet's figures by project id, with one query per registered reader for all of them."""
    wallets = list(wallets)
    now = now or timezone.now()
    # Only a wallet that holds something can hold something overdue: the usual page asks nothing.
    holding = [w.project_id for w in wallets if w.reserved > 0]
    overdue: dict[int, int] = {}
    for reader in _overdue_hold_readers if holding else ():
        for project_id, amount in reader(holding, now).items():
            overdue[project_id] = overdue.get(project_id, 0) + amount
    # One query for all of them, through the partial index of dated grants (usually finds nothing).
    held_back = unspendable([w.id for w in wallets], now=now)
    return {w.project_id: WalletFigures(balance=w.balance, reserved=max(w.reserved - overdue.get(w.project_id, 0), 0),
                                        unspendable=held_back.get(w.id, 0))
            for w in wallets}


def _held_back_sql(resource_type: str | None) -> tuple[str, list]:
    """unspendable_sql of the wallet %s, until %s, now %s, and the needle of `resource_type` if any."""
    if resource_type is None:
        return unspendable_sql("%s", "%s", "%s"), []
    return unspendable_sql("%s", "%s", "%s", "%s"), [scope_needle(resource_type)]


def available_for(wallet_id: int, *, now: datetime, until: datetime | None = None,
                  resource_type: str | None = None) -> int:
    """Micro-credits admission would count for the wallet: balance - reserved - what grants hold back
    (expired or scheduled at `now`, or expiring by `until`, a hold's end; for `resource_type`, a code,
    grants scoped to other types too). What a refusal reports as `available`, so the figure a 402
    gives is the one the decision used."""
    held_back, needle = _held_back_sql(resource_type)
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT balance - reserved - {held_back} FROM {Account._meta.db_table} WHERE id = %s",
            [wallet_id, db_datetime(until or now), db_datetime(now), *needle, wallet_id])
        return cursor.fetchone()[0]


def held_back_for(wallet_id: int, *, now: datetime, until: datetime | None = None,
                  resource_type: str | None = None) -> int:
    """Micro-credits of the wallet's grants that a hold of `resource_type` until `until` may not count
    (available_for's third term), for a reader that takes balance and reserved from wallet_figures."""
    held_back, needle = _held_back_sql(resource_type)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {held_back}", [wallet_id, db_datetime(until or now), db_datetime(now), *needle])
        return cursor.fetchone()[0]


# --- Grants ------------------------------------------------------------------------------------
EXPIRING_WINDOW_DAYS = 30


@dataclass(frozen=True)
class GrantSummary:
    """Micro-credits of a wallet's spendable grants by category, and what of them expires within
    EXPIRING_WINDOW_DAYS (scheduled grants count in neither)."""

    by_category: dict[str, int]
    expiring_soon: int
    scoped: int = 0  # of the spendable credits, those of grants that apply only to some resource types


def wallet_grant_summary(wallet_id: int, *, now: datetime | None = None) -> GrantSummary:
    from datetime import timedelta

    now = now or timezone.now()
    spendable = (Grant.objects.filter(wallet_id=wallet_id, remaining__gt=0, closed_at__isnull=True)
                 .filter(Q(effective_at__isnull=True) | Q(effective_at__lte=now))
                 .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now)))
    by_category = {category: 0 for category in Grant.Category.values}
    for row in spendable.values("category").annotate(total=Sum("remaining")):
        by_category[row["category"]] = row["total"]
    soon = spendable.filter(expires_at__lte=now + timedelta(days=EXPIRING_WINDOW_DAYS)).aggregate(
        total=Sum("remaining"))["total"] or 0
    scoped = spendable.filter(applies_to__gt="").aggregate(total=Sum("remaining"))["total"] or 0
    return GrantSummary(by_category=by_category, expiring_soon=soon, scoped=scoped)


def grant_sum_drifts(derived: dict[int, int]) -> list[str]:
    """I5: each wallet's grants hold max(balance, 0) between them (wallets/ledger/grants.py), the balance
    from its transfers (`derived`, account id → micro-credits), so a drifted cached balance is I1's alone."""
    sums = dict(Grant.objects.filter(remaining__gt=0).values("wallet_id").annotate(s=Sum("remaining"))
                .values_list("wallet_id", "s"))
    drifts = []
    wallets = Account.objects.filter(kind=Account.Kind.WALLET).values_list("id", "project_id").order_by("id")
    for wallet_id, project_id in wallets.iterator(chunk_size=2000):
        balance = derived.get(wallet_id, 0)
        if sums.get(wallet_id, 0) != max(balance, 0):
            drifts.append(f"wallet of project {project_id} (account {wallet_id}): its grants hold "
                          f"{sums.get(wallet_id, 0)}, its balance from its transfers is {balance} (micro-credits)")
    return drifts


def wallets_balance_total() -> int:
    """Micro-credits held by all wallets: the sum of the balances wallet_figures shows (the cached balance;
    an overdue hold changes reserved, never balance), in one aggregate, however many projects."""
    return Account.objects.filter(kind=Account.Kind.WALLET).aggregate(total=Sum("balance"))["total"] or 0


def wallet_figures_of(wallet: Account, *, now: datetime | None = None) -> WalletFigures:
    return wallet_figures([wallet], now=now)[wallet.project_id]


def project_wallet_figures(project_id: int, *, now: datetime | None = None) -> WalletFigures:
    """Read fresh from the database (inside a transaction: what that transaction sees)."""
    wallet = Account.objects.only("project_id", "balance", "reserved").get(project_id=project_id, kind=Account.Kind.WALLET)
    return wallet_figures_of(wallet, now=now)


def derived_balance(account_id: int) -> int:
    """Micro-credits: everything credited to the account minus everything debited from it."""
    credited = Transfer.objects.filter(credit_account_id=account_id).aggregate(s=Sum("amount"))["s"] or 0
    debited = Transfer.objects.filter(debit_account_id=account_id).aggregate(s=Sum("amount"))["s"] or 0
    return credited - debited


def derived_balances() -> dict[int, int]:
    """Every account's balance from its transfers, in two grouped queries."""
    return _ledger_sums()[0]


# Transfers out of a wallet that may take its available below zero: usage that already happened, and a
# card payment given back. A hold or a debit never may (the ledger refuses both beyond available).
# A grant's expiry or void takes its rest, which pending holds may have counted on (a void at any time;
# an expiry only of holds taken before grants existed or left overdue).
OVERDRAWING_KINDS = (Transfer.Kind.USAGE, Transfer.Kind.REFUND, Transfer.Kind.GRANT_EXPIRY, Transfer.Kind.GRANT_VOID)


def _ledger_sums() -> tuple[dict[int, int], dict[int, int]]:
    """(each account's balance from its transfers, each wallet's micro-credits taken by OVERDRAWING_KINDS),
    in two grouped scans of the transfers."""
    balances: dict[int, int] = {}
    overdrawn: dict[int, int] = {}
    for row in Transfer.objects.values("credit_account_id").annotate(s=Sum("amount")):
        balances[row["credit_account_id"]] = balances.get(row["credit_account_id"], 0) + row["s"]
    for row in (Transfer.objects.values("debit_account_id")
                .annotate(s=Sum("amount"), overdrawing=Sum("amount", filter=Q(kind__in=OVERDRAWING_KINDS)))):
        balances[row["debit_account_id"]] = balances.get(row["debit_account_id"], 0) - row["s"]
        overdrawn[row["debit_account_id"]] = row["overdrawing"] or 0
    return balances, overdrawn


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


@contextmanager
def read_snapshot() -> Iterator[None]:
    """One consistent view of the database for a check that reads in several statements, so that
    writers running meanwhile cannot make it report a drift that is not there. Inside a transaction
    already, that transaction is the view (on SQLite Django's own transactions take the write lock
    at BEGIN, so nothing moves under them; on PostgreSQL the caller chose its isolation).

    PostgreSQL: a REPEATABLE READ, READ ONLY transaction: one snapshot, no locks, writers go on.
    SQLite: a deferred read transaction (a raw BEGIN DEFERRED: Django's transactions here are
    IMMEDIATE, which would take the write lock and queue every writer behind the whole check). In
    WAL mode a reader sees the database as of its first read and writers go on meanwhile.
    """
    if connection.in_atomic_block or (connection.vendor == "sqlite" and connection.connection is not None
                                      and connection.connection.in_transaction):
        yield
        return
    if connection.vendor == "postgresql":
        with transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield
        return
    if connection.vendor != "sqlite":
        raise NotImplementedError(f"no read snapshot written for {connection.vendor}")
    with connection.cursor() as cursor:
        cursor.execute("BEGIN DEFERRED")
    try:
        yield
    finally:
        # Nothing was written: ending the read transaction either way only lets the snapshot go.
        with connection.cursor() as cursor:
            cursor.execute("ROLLBACK")


def ledger_check() -> LedgerReport:
    """The ledger's invariants, in one read snapshot; each drift names its wallet.

    I5 each wallet's grants hold max(balance, 0) between them (grant_sum_drifts).
    I1 each wallet's cached balance equals the sum of its transfers; I3 all accounts sum to zero
    (transfers, and wallets counted by their cached balance); I2 no wallet's available went below
    zero through a hold or a debit: balance - reserved + what OVERDRAWING_KINDS took from it >= 0
    (a hold or a debit is taken only while available covers it, a commit charges at most what it
    holds, so only those transfers can take available below zero, and by at most what they moved).
    """
    with read_snapshot():
        derived, overdrawn = _ledger_sums()
        drifts: list[str] = []
        wallets = Account.objects.filter(kind=Account.Kind.WALLET).select_related("project").order_by("id")
        count = cached_total = 0
        for wallet in wallets.iterator(chunk_size=2000):
            count += 1
            cached_total += wallet.balance
            expected = derived.get(wallet.id, 0)
            if wallet.balance != expected:
                drifts.append(
                    f"wallet of project {wallet.project.slug!r} (account {wallet.id}): cached balance "
                    f"{wallet.balance} != {expected} from its transfers (micro-credits)"
                )
            if wallet.reserved < 0:
                drifts.append(f"wallet of project {wallet.project.slug!r}: reserved {wallet.reserved} is negative")
            if wallet.available + overdrawn.get(wallet.id, 0) < 0:
                drifts.append(
                    f"wallet of project {wallet.project.slug!r} (account {wallet.id}): available {wallet.available} "
                    f"is below zero by more than its usage charges and refunds took ({overdrawn.get(wallet.id, 0)}) "
                    "(micro-credits): a hold or a debit overdrew it"
                )
        system_ids = set(Account.objects.filter(kind=Account.Kind.SYSTEM).values_list("id", flat=True))
        drifts.extend(grant_sum_drifts(derived))
    # Wallets are counted by their cached balance so that cached drift shows in the total too.
    total = cached_total + sum(v for k, v in derived.items() if k in system_ids)
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
    """ledger_check and every registered check, all in one read snapshot."""
    with read_snapshot():
        report = ledger_check()
        for check in extra_checks:
            report.drifts.extend(check())
    return report
