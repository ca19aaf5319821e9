"""The database's CHECKs hold a wallet's balance and reserved, and a transfer's amount, within the
ledger's bounds, on both backends: a raw UPDATE or INSERT past a bound is refused."""

import pytest
from django.db import IntegrityError, connection, transaction

from creditservice.lib.money import MAX_AMOUNT_MICROS, MAX_BALANCE_MICROS, MIN_BALANCE_MICROS
from wallets.models import Account, Transfer
from wallets.tests.factories import ProjectFactory

pytestmark = pytest.mark.django_db


def _update_wallet(wallet_id: int, **values: int) -> None:
    assignments = ", ".join(f"{column} = %s" for column in values)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE wallets_account SET {assignments} WHERE id = %s", [*values.values(), wallet_id])


def _refused(constraint: str, write) -> None:
    with pytest.raises(IntegrityError) as refused, transaction.atomic():
        write()
    # PostgreSQL names the constraint; SQLite names it too ("CHECK constraint failed: <name>").
    assert constraint in str(refused.value)


def test_a_wallet_balance_past_either_bound_is_refused():
    wallet = ProjectFactory(slug="acme").wallet
    _refused("account_balance_within_bounds", lambda: _update_wallet(wallet.id, balance=MAX_BALANCE_MICROS + 1))
    _refused("account_balance_within_bounds", lambda: _update_wallet(wallet.id, balance=MIN_BALANCE_MICROS - 1))
    # The bounds themselves are inside: a commit of a hold may take a balance down to the floor.
    _update_wallet(wallet.id, balance=MIN_BALANCE_MICROS)
    _update_wallet(wallet.id, balance=MAX_BALANCE_MICROS)


def test_a_wallet_reserved_past_either_bound_is_refused():
    wallet = ProjectFactory(slug="acme").wallet
    _refused("account_reserved_within_bound", lambda: _update_wallet(wallet.id, reserved=MAX_BALANCE_MICROS + 1))
    _refused("account_reserved_not_negative", lambda: _update_wallet(wallet.id, reserved=-1))
    _update_wallet(wallet.id, reserved=MAX_BALANCE_MICROS)


def test_a_system_account_holds_no_balance():
    revenue = Account.objects.get(code=Account.System.REVENUE)
    _refused("account_kind_shape", lambda: _update_wallet(revenue.id, balance=1))


def test_a_transfer_beyond_one_amount_or_of_nothing_is_refused():
    project = ProjectFactory(slug="acme")
    revenue = Account.objects.get(code=Account.System.REVENUE)

    def insert(amount: int):
        return lambda: Transfer.objects.create(project=project, debit_account=project.wallet, credit_account=revenue,
                                               amount=amount, kind=Transfer.Kind.DEBIT, idempotency_key=f"k{amount}",
                                               wallet_balance_after=0)

    _refused("transfer_amount_within_bound", insert(MAX_AMOUNT_MICROS + 1))
    _refused("transfer_amount_positive", insert(0))
