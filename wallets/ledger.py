"""The only code that moves credits.

A transfer and the change of the wallet's cached balance happen in one database transaction. The
wallet row is changed by one conditional UPDATE … RETURNING, so the row lock is held for one
statement's worth of work, not across Python, and a debit that would overdraw is refused by the
database rather than by a read-then-write race. Only the project's own wallet row is locked: system
accounts are never updated (their balances are derived), so projects never queue behind each other.

Holds (reservations) live here too: `reserved` is part of the wallet and only this module writes it.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, connection, transaction

from creditservice.lib.errors import InsufficientCredits
from creditservice.lib.money import format_amount

from .models import Account, Project, Transfer

log = logging.getLogger(__name__)

_WALLET = Account._meta.db_table
_TRANSFER = Transfer._meta.db_table

# Hooks run after a commit that funded a wallet (available > 0). Registered by higher apps
# (billing's lifecycle reactivates a project in grace) so this module never imports them.
_funded_hooks: list[Callable[[int], None]] = []


def on_wallet_funded(hook: Callable[[int], None]) -> Callable[[int], None]:
    """Register hook(project_id), called after commit whenever a transfer leaves available > 0."""
    _funded_hooks.append(hook)
    return hook


def _run_funded_hooks(project_id: int) -> None:
    for hook in _funded_hooks:
        try:
            hook(project_id)
        except Exception:  # a hook must never undo money that has moved
            log.exception("wallet funded hook %r failed for project %s", hook, project_id)


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
    if code not in _system_ids:
        account, _ = Account.objects.get_or_create(code=code, defaults={"kind": Account.Kind.SYSTEM})
        _system_ids[code] = account.id
    return _system_ids[code]


def wallet_account_id(project_id: int) -> int:
    return Account.objects.only("id").get(project_id=project_id, kind=Account.Kind.WALLET).id


def _apply_to_wallet(wallet_id: int, delta: int, *, require_available: int | None, release_hold: int = 0) -> WalletState | None:
    """balance += delta and reserved -= release_hold in one statement; None when the guard refuses.

    require_available: the amount that must be available (balance - reserved) before the change.
    """
    guard = ""
    params: list[Any] = [delta, release_hold, wallet_id]
    if require_available is not None:
        guard = " AND balance - reserved >= %s"
        params.append(require_available)
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
) -> tuple[Transfer, bool]:
    """Move `amount` micro-credits between a project's wallet and a system account.

    direction "in" credits the wallet (system → wallet); "out" debits it (wallet → system).
    require_funds refuses an "out" transfer that would take available below zero (API debits);
    billing charges pass False because usage already happened and may overdraw the wallet.
    release_hold: micro-credits of reserved to drop in the same statement (commit of a hold).
    Returns (transfer, created). A repeated idempotency_key returns the first transfer, moving nothing.
    """
    if amount <= 0:
        raise ValueError("a transfer moves a positive amount")
    if direction not in ("in", "out"):
        raise ValueError("direction is 'in' or 'out'")
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
                raise InsufficientCredits("not enough available credits", requested=format_amount(amount))
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
            if state.available > 0:
                transaction.on_commit(lambda: _run_funded_hooks(project_id))
    except IntegrityError:
        # A concurrent request with the same key won the unique index; ours rolled back whole.
        existing = Transfer.objects.filter(idempotency_key=idempotency_key).first()
        if existing is None:
            raise
        return existing, False
    return record, True


def hold(*, wallet_id: int, amount: int) -> WalletState | None:
    """reserved += amount if available covers it; None when it does not. Call inside the caller's atomic block."""
    return _apply_to_wallet(wallet_id, 0, require_available=amount, release_hold=-amount)


def release(*, wallet_id: int, amount: int) -> WalletState:
    """reserved -= amount (a released or expired hold)."""
    state = _apply_to_wallet(wallet_id, 0, require_available=None, release_hold=amount)
    assert state is not None
    return state

