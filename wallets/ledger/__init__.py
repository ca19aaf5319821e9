"""The only code that moves credits.

A transfer and the change of the wallet's cached balance happen in one database transaction. The
wallet row is changed by one conditional UPDATE … RETURNING, so the row lock is held for one
statement's worth of work, not across Python, and a debit that would overdraw is refused by the
database rather than by a read-then-write race. Only the project's own wallet row is locked: system
accounts are never updated (their balances are derived), so projects never queue behind each other.

Holds (reservations) live here too: `reserved` is part of the wallet and only this module writes it.

Bounds, so no arithmetic leaves a signed 64-bit column (±9.22 × 10^18): one transfer moves at most
money.MAX_AMOUNT_MICROS (10^18), and no transfer or batch may take a balance outside
±MAX_BALANCE_MICROS (4 × 10^18): it is refused (422 balance_limit_exceeded) and writes nothing. The
check is a condition of the wallet's one UPDATE, written as `balance <= MAX - delta` against a
constant, so the check itself cannot overflow and no concurrent transfer can slip past it.
`reserved` needs no check of its own: a hold is taken only while available covers it, so reserved
stays at most the balance, at most MAX_BALANCE_MICROS. A commit of a hold is not bounded (it charges
at most what is reserved, and refusing it after admission would strand the hold): it can take a
balance down to -2 × MAX_BALANCE_MICROS at worst, still inside the column.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from creditservice.lib.errors import AmountLimitExceeded, BalanceLimitExceeded, InsufficientCredits
from creditservice.lib.money import MAX_AMOUNT_MICROS, MAX_BALANCE_MICROS, format_amount
from creditservice.lib.queries import db_datetime

from ..models import Account, Project, Transfer
from . import functions, grants
from .grants import GrantTerms

log = logging.getLogger(__name__)

_WALLET = Account._meta.db_table
_TRANSFER = Transfer._meta.db_table

# MAX_BALANCE_MICROS (money.py, 4 × 10^12 credits): a wallet's balance stays within ±MAX_BALANCE_MICROS.

# Hooks that react to a wallet's funding, registered by higher apps (billing's lifecycle) so this
# module never imports them. Funded: a transfer, or a hold given back (the unused part of a commit, a
# release, an expiry), left available > 0 (a project in grace or suspended for money is reactivated).
# Unfunded: a transfer out (a refund, a debit) left available <= 0 (an active project goes into grace,
# as after a usage charge). The hooks re-read the project and its available balance as admission sees
# it, so this module only decides when they may have something to do (see may_be_funded).
_funded_hooks: list[Callable[[int], None]] = []
_unfunded_hooks: list[Callable[[int], None]] = []


def on_wallet_funded(hook: Callable[[int], None]) -> Callable[[int], None]:
    """Register hook(project_id), called whenever a transfer or a hold given back may leave available > 0."""
    _funded_hooks.append(hook)
    return hook


def on_wallet_unfunded(hook: Callable[[int], None]) -> Callable[[int], None]:
    """Register hook(project_id), called whenever transfer() takes credits out and leaves available <= 0."""
    _unfunded_hooks.append(hook)
    return hook


# Hooks told of every change of a wallet's balance or holds (billing's threshold alerts), called in the
# transaction that made it. They run on the admission hot path, so each must decide in memory whether
# it has anything to do (most projects have no alerts) and defer the real work to after the commit.
# A hold alone (a reserve) does not call them: it is seen when it is committed or released.
_changed_hooks: list[Callable[[int], None]] = []


def on_wallet_changed(hook: Callable[[int], None]) -> Callable[[int], None]:
    """Register hook(project_id), called inside the transaction of every transfer, charge, commit or release."""
    _changed_hooks.append(hook)
    return hook


def _wallet_changed(project_id: int) -> None:
    for hook in _changed_hooks:
        hook(project_id)


def _run_hooks(hooks: list[Callable[[int], None]], project_id: int) -> None:
    for hook in hooks:
        try:
            # Its own savepoint: a failing hook rolls back only what it wrote, never the money.
            with transaction.atomic():
                hook(project_id)
        except Exception:
            log.exception("wallet hook %r failed for project %s", hook, project_id)


def _run_funded_hooks(project_id: int) -> None:
    _run_hooks(_funded_hooks, project_id)


def may_be_funded(*, balance: int, reserved: int, given_back: int) -> bool:
    """Whether a change that gave `given_back` micro-credits back to the wallet's available balance (the
    unused part of a hold) may have funded it, so the funded hooks must look.

    Yes when it took the cached available from <= 0 to > 0; and yes while the cached available stays at
    or below zero with holds left: a hold past its expiry counts in `reserved` until the expiry task
    releases it, yet admission and every reader treat it as free already (wallets.selectors.
    wallet_figures), so the wallet may be funded as they see it. A wallet funded before the change needs
    nothing (its project is not in grace for money), which keeps the commit hot path free of the hooks.
    """
    if given_back <= 0:
        return False
    available = balance - reserved
    return available - given_back <= 0 if available > 0 else reserved > 0


@dataclass(frozen=True)
class WalletState:
    balance: int
    reserved: int

    @property
    def available(self) -> int:
        return self.balance - self.reserved


_system_ids: dict[str, int] = {}


def system_account_id(code: str) -> int:
    """System accounts never change once created; their ids are cached for the process."""
    cached = _system_ids.get(code)
    if cached is not None:
        return cached
    account, _ = Account.objects.get_or_create(code=code, defaults={"kind": Account.Kind.SYSTEM})
    # Cached only once the row is committed: an id cached from a transaction that then rolls back
    # (a deadlock victim creating the account) would point every later transfer at a missing row,
    # and another transaction using the id before the commit would wait on that uncommitted row
    # while holding its wallet lock.
    transaction.on_commit(lambda: _system_ids.__setitem__(code, account.id))
    return account.id


def wallet_account_id(project_id: int) -> int:
    return Account.objects.only("id").get(project_id=project_id, kind=Account.Kind.WALLET).id


def balance_guard(delta: int, balance: str = "balance") -> tuple[str, list[int]]:
    """SQL condition and parameters: `balance` + delta stays within ±MAX_BALANCE_MICROS.

    One-sided, so a credit to a wallet below -MAX (after commits) is still taken, and written against
    constants, so no overflow happens while checking.
    """
    if delta > 0:
        return f"{balance} <= %s", [MAX_BALANCE_MICROS - delta]
    if delta < 0:
        return f"{balance} >= %s", [-MAX_BALANCE_MICROS - delta]
    return "1 = 1", []


def _apply_to_wallet(wallet_id: int, delta: int, *, require_available: int | None, release_hold: int = 0,
                     bounded: bool = True, until=None, resource_type: str | None = None) -> WalletState | None:
    """balance += delta and reserved -= release_hold in one statement; None when a guard refuses.

    require_available: the amount that must be available before the change: balance - reserved - the
    credits of grants not spendable until `until` (default now), or for `resource_type` (a code) not
    at all (grants.unspendable_sql).
    bounded: refuse a balance outside ±MAX_BALANCE_MICROS (every change but the commit of a hold).
    """
    guard = ""
    params: list[Any] = [delta, release_hold, wallet_id]
    if require_available is not None:
        now = timezone.now()
        needle = "%s" if resource_type else None
        guard = f" AND balance - reserved - {grants.unspendable_sql(_WALLET + '.id', '%s', '%s', needle)} >= %s"
        params += [db_datetime(until or now), db_datetime(now)]
        params += [grants.scope_needle(resource_type)] if resource_type else []
        params += [require_available]
    if bounded and delta:
        condition, bound = balance_guard(delta)
        guard += f" AND {condition}"
        params += bound
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {_WALLET} SET balance = balance + %s, reserved = reserved - %s, updated_at = CURRENT_TIMESTAMP "
            f"WHERE id = %s{guard} RETURNING balance, reserved",
            params,
        )
        row = cursor.fetchone()
    return WalletState(balance=row[0], reserved=row[1]) if row else None


def transfer(
    *,
    project: Project | int,
    direction: str,
    system_code: str,
    amount: int,
    kind: str,
    idempotency_key: str,
    reason: str = "",
    reference: str = "",
    metadata: dict | None = None,
    actor: str = "system",
    require_funds: bool = False,
    release_hold: int = 0,
    grant: GrantTerms | None = None,
    draw_grant_id: int | None = None,
) -> tuple[Transfer, bool]:
    """Move `amount` micro-credits between a project's wallet and a system account.

    direction "in" credits the wallet (system → wallet); "out" debits it (wallet → system).
    require_funds refuses an "out" transfer that would take available below zero (API debits);
    billing charges pass False because usage already happened and may overdraw the wallet.
    release_hold: micro-credits of reserved to drop in the same statement (commit of a hold).
    Returns (transfer, created). A repeated idempotency_key returns the first transfer, moving nothing.
    Grants (grants.py): a credit makes a grant (`grant`: its terms) or, as a credit-back, gives back to
    the grants usage drew from; a debit draws from the grants in the draw order, or only from
    `draw_grant_id` (a grant's expiry or void).
    The funded or unfunded hooks run inside the same transaction (see on_wallet_funded).
    """
    if amount <= 0:
        raise ValueError("a transfer moves a positive amount")
    if direction not in ("in", "out"):
        raise ValueError("direction is 'in' or 'out'")
    if amount > MAX_AMOUNT_MICROS:
        raise AmountLimitExceeded(f"one transfer moves at most {format_amount(MAX_AMOUNT_MICROS)} credits",
                                  limit=format_amount(MAX_AMOUNT_MICROS), requested=format_amount(amount))
    project_id = project if isinstance(project, int) else project.id
    existing = Transfer.objects.filter(idempotency_key=idempotency_key).first()
    if existing is not None:
        return existing, False
    wallet_id = wallet_account_id(project_id)
    system_id = system_account_id(system_code)
    delta = amount if direction == "in" else -amount
    try:
        with transaction.atomic():
            state = _apply_to_wallet(
                wallet_id,
                delta,
                require_available=(amount - release_hold) if (require_funds and direction == "out") else None,
                release_hold=release_hold,
            )
            if state is None:
                # A debit that needs funds leaves balance >= reserved >= 0, so only the funds guard can
                # refuse it; a credit or a charge can only be refused by the balance bound.
                if require_funds and direction == "out":
                    balance, reserved = Account.objects.filter(id=wallet_id).values_list("balance", "reserved").get()
                    raise InsufficientCredits("not enough available credits", requested=format_amount(amount),
                                              available=format_amount(balance - reserved))
                raise BalanceLimitExceeded(
                    f"this transfer would take the wallet's balance beyond ±{format_amount(MAX_BALANCE_MICROS)} credits",
                    limit=format_amount(MAX_BALANCE_MICROS), requested=format_amount(amount))
            record = Transfer.objects.create(
                project_id=project_id,
                debit_account_id=wallet_id if direction == "out" else system_id,
                credit_account_id=system_id if direction == "out" else wallet_id,
                amount=amount,
                kind=kind,
                reason=reason,
                reference=reference,
                idempotency_key=idempotency_key,
                metadata=metadata or {},
                actor=actor,
                wallet_balance_after=state.balance,
            )
            _grant_side(record, wallet_id=wallet_id, direction=direction, grant=grant, draw_grant_id=draw_grant_id)
            # The hooks run in this transaction, after the wallet moved: the project's status changes
            # with the money, and a caller that answers from this transaction (the wallet API, whose
            # stored answer commits with the effect) shows the state after both.
            # Holds left in a wallet at or below zero may be past their expiry, so free for admission: the
            # funded hooks look then too (see may_be_funded); each hook re-checks the available balance
            # as admission sees it, so at most one of them acts.
            if state.available > 0 or state.reserved > 0:
                _run_hooks(_funded_hooks, project_id)
            if state.available <= 0 and direction == "out":
                _run_hooks(_unfunded_hooks, project_id)
            _wallet_changed(project_id)
    except IntegrityError:
        # A concurrent request with the same key won the unique index; ours rolled back whole.
        existing = Transfer.objects.filter(idempotency_key=idempotency_key).first()
        if existing is None:
            raise
        return existing, False
    return record, True


def _grant_side(record: Transfer, *, wallet_id: int, direction: str, grant: GrantTerms | None,
                draw_grant_id: int | None) -> None:
    if direction == "in":
        grants.credit(wallet_id=wallet_id, transfer_id=record.id, kind=record.kind, amount=record.amount,
                      balance_after=record.wallet_balance_after, reason=record.reason, actor=record.actor, terms=grant)
    elif draw_grant_id is not None:
        grants.draw_from(grant_id=draw_grant_id, transfer_id=record.id, amount=record.amount)
    elif record.kind == Transfer.Kind.REFUND:
        grants.draw_refund(wallet_id=wallet_id, transfer_id=record.id, amount=record.amount,
                           metadata=record.metadata or {}, now=record.created_at)
    else:
        grants.draw(wallet_id=wallet_id, transfer_id=record.id, amount=record.amount, now=record.created_at)


def hold(*, wallet_id: int, amount: int, until=None, resource_type: str | None = None) -> WalletState | None:
    """reserved += amount if available covers it; None when it does not. Call inside the caller's atomic block.

    until: the hold's expiry; credits of grants expiring by then do not cover it (grants.py).
    resource_type: the code the hold is for; credits of grants scoped to other types do not cover it."""
    require_holdable(amount)
    return _apply_to_wallet(wallet_id, 0, require_available=amount, release_hold=-amount, until=until,
                            resource_type=resource_type)


def require_holdable(amount: int) -> None:
    """The bound of one hold (hold(), and the hold statement of functions.py run by a higher app)."""
    if amount > MAX_AMOUNT_MICROS:
        raise AmountLimitExceeded(f"one hold is at most {format_amount(MAX_AMOUNT_MICROS)} credits",
                                  limit=format_amount(MAX_AMOUNT_MICROS), requested=format_amount(amount))


def release(*, wallet_id: int, amount: int, project_id: int | None = None) -> WalletState:
    """reserved -= amount (a released or expired hold, or one committed for nothing). Like the unused part
    of a commit, what it gives back may fund the wallet: the funded hooks run after the commit then
    (project_id saves looking the project up for them)."""
    state = _apply_to_wallet(wallet_id, 0, require_available=None, release_hold=amount)
    assert state is not None
    if project_id is None and (_changed_hooks or _funded_hooks):
        project_id = Account.objects.values_list("project_id", flat=True).get(id=wallet_id)
    after_hold_ended(project_id=project_id, state=state, given_back=amount)
    return state


def after_hold_ended(*, project_id: int, state: WalletState, given_back: int) -> None:
    """The hooks of a hold committed or released (release, commit_hold, or the statements of
    functions.py run by a higher app): the funded hooks after the commit when the `given_back` part
    may have funded the wallet (may_be_funded), and the changed hooks."""
    if _funded_hooks and may_be_funded(balance=state.balance, reserved=state.reserved, given_back=given_back):
        transaction.on_commit(lambda: _run_funded_hooks(project_id))
    _wallet_changed(project_id)


def charge_available(*, project_id: int, wallet_id: int, amount: int, kind: str, idempotency_key: str,
                     reason: str = "", reference: str = "", actor: str = "system",
                     resource_type: str | None = None) -> WalletState | None:
    """Charge `amount` micro-credits wallet → revenue if the available balance covers it; None when it
    does not (nothing written). The per-call charge of gateway admission: the conditional UPDATE locks
    the wallet row, so concurrent charges are serialized and available never goes below zero.

    Like commit_hold(): raw SQL, no model built, and no lookup of an earlier transfer (the caller has
    made the charge exactly-once under its own unique key in the same transaction); on PostgreSQL one
    call of the charge function (functions.py: UPDATE, transfer and draw). Must be called inside the
    caller's atomic block. A charge that leaves nothing available runs the unfunded hooks in this
    transaction, as transfer() does. resource_type: the code charged for (grants scoped to others do not
    cover it, and it draws from its own grants first).
    """
    if not 0 < amount <= MAX_AMOUNT_MICROS:
        raise ValueError("a charge moves a positive amount of at most one amount's bound")
    now = timezone.now()
    with connection.cursor() as cursor:
        if functions.installed():
            # The UPDATE, the transfer and the draw in one round trip (functions.py).
            cursor.execute(f"SELECT * FROM {functions.charge_function()[0]}({', '.join(['%s'] * 11)})",
                           charge_arguments(project_id=project_id, wallet_id=wallet_id, amount=amount, kind=kind,
                                            idempotency_key=idempotency_key, reason=reason, reference=reference,
                                            actor=actor, now=now, resource_type=resource_type))
            balance, reserved, transfer_id = cursor.fetchone()
            if transfer_id is None:
                return None
            state = WalletState(balance=balance, reserved=reserved)
        else:
            state = _apply_to_wallet(wallet_id, -amount, require_available=amount, bounded=False,
                                     resource_type=resource_type)
            if state is None:
                return None
            # SQLite (or PostgreSQL before `migrate` created the function): the same three steps one by one.
            params = [project_id, wallet_id, system_account_id(Account.System.REVENUE), amount, Transfer.Kind(kind).value,
                      reason, reference, idempotency_key, "{}", actor, state.balance, db_datetime(now)]
            cursor.execute(
                f"INSERT INTO {_TRANSFER} ({_INSERT_TRANSFER_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "RETURNING id", params)
            grants.draw(wallet_id=wallet_id, transfer_id=cursor.fetchone()[0], amount=amount, now=now,
                        resource_type=resource_type)
    after_charge(project_id=project_id, state=state)
    return state


def charge_arguments(*, project_id: int, wallet_id: int, amount: int, kind: str, idempotency_key: str, reason: str,
                     reference: str, actor: str, now, resource_type: str | None) -> list:
    """The arguments of the charge function (functions.charge_function()), in its order."""
    if not 0 < amount <= MAX_AMOUNT_MICROS:
        raise ValueError("a charge moves a positive amount of at most one amount's bound")
    return [project_id, wallet_id, system_account_id(Account.System.REVENUE), amount, Transfer.Kind(kind).value,
            reason, reference, idempotency_key, actor, now, grants.scope_needle(resource_type) if resource_type else None]


def after_charge(*, project_id: int, state: WalletState) -> None:
    """The hooks of a charge (charge_available, or the charge function called by a higher app): the
    unfunded hooks when it left nothing available, and the changed hooks."""
    if state.available <= 0:
        _run_hooks(_unfunded_hooks, project_id)
    _wallet_changed(project_id)


def _now():
    from django.utils import timezone

    return timezone.now()


_INSERT_TRANSFER_COLUMNS = (
    "project_id, debit_account_id, credit_account_id, amount, kind, reason, reference, idempotency_key, "
    "metadata, actor, wallet_balance_after, created_at"
)


def commit_hold(
    *,
    project_id: int,
    wallet_id: int,
    held: int,
    amount: int,
    kind: str,
    idempotency_key: str,
    system_code: str = Account.System.REVENUE,
    reason: str = "",
    reference: str = "",
    actor: str = "system",
    resource_type: str | None = None,
) -> int:
    """Charge `amount` of a hold of `held` micro-credits: one transfer wallet → system account of
    `amount`, and reserved -= held, in the wallet's one UPDATE. Returns the wallet balance after.

    The admission hot path's transfer: the caller must already have made the commit exactly-once (a
    compare-and-set on its reservation, in the same transaction), so unlike transfer() there is no
    lookup of an earlier transfer first; a repeated idempotency_key fails on the unique index and rolls
    the caller's transaction back. Raw SQL, no model built: on PostgreSQL the UPDATE and the INSERT
    are one statement. Must be called inside the caller's atomic block. The funded hooks run after the
    commit only if the released remainder may have funded the wallet (may_be_funded; a charge never
    funds a wallet otherwise). resource_type: the reservation's code; the charge draws from the grants
    that apply to it first (grants.py).
    """
    if not 0 < amount <= held:
        raise ValueError("a commit charges a positive amount of at most the held amount")
    system_id = system_account_id(system_code)
    now = timezone.now()
    params = [project_id, wallet_id, system_id, amount, kind, reason, reference, idempotency_key, "{}", actor]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                f"WITH w AS (UPDATE {_WALLET} SET balance = balance - %s, reserved = reserved - %s, updated_at = %s "
                f"WHERE id = %s RETURNING balance, reserved) "
                f"INSERT INTO {_TRANSFER} ({_INSERT_TRANSFER_COLUMNS}) "
                f"SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s::jsonb, %s, w.balance, %s FROM w RETURNING wallet_balance_after, "
                f"(SELECT reserved FROM w), id",
                [amount, held, now, wallet_id, *params, now],
            )
            row = cursor.fetchone()
            if row is None:
                raise Account.DoesNotExist(f"no wallet {wallet_id}")
            balance, reserved, transfer_id = row
        else:
            state = _apply_to_wallet(wallet_id, -amount, require_available=None, release_hold=held, bounded=False)
            if state is None:
                raise Account.DoesNotExist(f"no wallet {wallet_id}")
            balance, reserved = state.balance, state.reserved
            cursor.execute(
                f"INSERT INTO {_TRANSFER} ({_INSERT_TRANSFER_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [*params, balance, db_datetime(now)],
            )
            transfer_id = cursor.lastrowid
    grants.draw(wallet_id=wallet_id, transfer_id=transfer_id, amount=amount, now=now, resource_type=resource_type)
    after_hold_ended(project_id=project_id, state=WalletState(balance=balance, reserved=reserved),
                     given_back=held - amount)
    return balance


# The set-based path of the billing batch; imported last, it uses the helpers above.
from .bulk import BulkResult, BulkTransfer, transfer_many  # noqa: E402, F401
from .closing import grant_expire, grant_void, grants_expire_due  # noqa: E402, F401
