"""Credit grants in the ledger: the draw order, draws recorded per debit, credit-backs to their sources,
expiry exactly once and at once for every reader, scheduled grants, voids, overdraft, the migration of
old balances and the check that catches a broken grant sum."""

import importlib
from datetime import timedelta

import pytest
import time_machine
from django.apps import apps
from django.utils import timezone

from creditservice.lib.errors import InsufficientCredits
from creditservice.lib.money import credits_to_micros
from creditservice.testing.invariants import assert_books_balance
from wallets import ledger, services
from wallets.ledger import BulkTransfer
from wallets.models import Account, Grant, GrantDraw, Transfer
from wallets.selectors import ledger_check, project_wallet_figures, wallet_grant_summary
from wallets.tests.factories import ProjectFactory, fund

pytestmark = pytest.mark.django_db

_keys = iter(range(10**9))


def grant(project, credits: str, category: str = "promotional", **terms) -> Grant:
    return services.grant_create(project=project, category=category, amount=credits_to_micros(credits),
                                 reason="test", actor="system", idempotency_key=f"g-{next(_keys)}", **terms)


def debit(project, credits: str) -> Transfer:
    return services.wallet_debit(project=project, amount=credits_to_micros(credits), reason="test",
                                 idempotency_key=f"d-{next(_keys)}", actor="system")


def draws(transfer: Transfer) -> list[tuple[int, int]]:
    return list(GrantDraw.objects.filter(transfer=transfer).order_by("id").values_list("grant_id", "amount"))


def remaining(*grants: Grant) -> list[int]:
    return [Grant.objects.get(id=g.id).remaining for g in grants]


def M(credits: str) -> int:
    return credits_to_micros(credits)


def test_a_top_up_or_staff_credit_creates_a_grant():
    project = ProjectFactory(slug="acme")
    fund(project, "10")
    ledger.transfer(project=project, direction="in", system_code=Account.System.STRIPE, amount=M("5"),
                    kind=Transfer.Kind.TOP_UP, idempotency_key="top-up-1")
    categories = sorted(Grant.objects.filter(wallet__project=project).values_list("category", "remaining"))
    assert categories == [("granted", M("10")), ("purchased", M("5"))]
    assert_books_balance()


def test_debits_draw_by_priority_then_soonest_expiry_then_oldest():
    project = ProjectFactory(slug="acme")
    now = timezone.now()
    low = grant(project, "10", category="granted", priority=20)
    late = grant(project, "10", priority=10, expires_at=now + timedelta(days=10))
    soon_old = grant(project, "10", priority=10, expires_at=now + timedelta(days=5))
    soon_new = grant(project, "10", priority=10, expires_at=now + timedelta(days=5))
    never = grant(project, "10", priority=10)
    order = []
    for _ in range(5):
        order.append(draws(debit(project, "10"))[0][0])
    assert order == [soon_old.id, soon_new.id, late.id, never.id, low.id]
    assert_books_balance()


def test_a_debit_spanning_grants_records_each_draw():
    project = ProjectFactory(slug="acme")
    first = grant(project, "10", priority=1)
    second = grant(project, "10", priority=2)
    record = debit(project, "15")
    assert draws(record) == [(first.id, M("10")), (second.id, M("5"))]
    assert sum(amount for _, amount in draws(record)) == record.amount
    assert remaining(first, second) == [0, M("5")]
    assert Grant.objects.get(id=first.id).status_at(timezone.now()) == "spent"


def test_a_credit_back_returns_to_the_grants_the_usage_came_from():
    project = ProjectFactory(slug="acme")
    first = grant(project, "10", priority=1)
    second = grant(project, "10", priority=2)
    ledger.transfer_many(transfers=[BulkTransfer(project.id, M("15"), "usage-1")], direction="out",
                         system_code=Account.System.REVENUE, kind=Transfer.Kind.USAGE)
    assert remaining(first, second) == [0, M("5")]
    ledger.transfer_many(transfers=[BulkTransfer(project.id, M("7"), "back-1")], direction="in",
                         system_code=Account.System.REVENUE, kind=Transfer.Kind.REVERSAL)
    back = Transfer.objects.get(idempotency_key="back-1")
    # The most recently drawn grant first: 5 back to the second, then 2 to the first.
    assert draws(back) == [(second.id, -M("5")), (first.id, -M("2"))]
    assert remaining(first, second) == [M("2"), M("10")]
    assert not Grant.objects.filter(source_transfer=back).exists()
    assert_books_balance()


def test_usage_beyond_every_grant_overdraws_and_the_next_credit_pays_it_first():
    project = ProjectFactory(slug="acme")
    only = grant(project, "10")
    ledger.transfer_many(transfers=[BulkTransfer(project.id, M("14"), "usage-1")], direction="out",
                         system_code=Account.System.REVENUE, kind=Transfer.Kind.USAGE)
    assert remaining(only) == [0]
    fund(project, "10")
    new = Grant.objects.filter(wallet__project=project).order_by("-id").first()
    assert (new.amount, new.remaining) == (M("10"), M("6"))
    assert draws(new.source_transfer) == [(new.id, M("4"))]  # the debt it paid
    assert_books_balance()


def test_a_grant_past_its_expiry_is_expired_at_once_and_by_the_task_exactly_once():
    project = ProjectFactory(slug="acme")
    fund(project, "5")  # granted, priority 20
    promo = grant(project, "10", priority=10, expires_at=timezone.now() + timedelta(days=1))
    debit(project, "3")  # from the promotion first
    with time_machine.travel(timezone.now() + timedelta(days=2)):
        figures = project_wallet_figures(project.id)
        assert (figures.balance, figures.available) == (M("12"), M("5"))
        assert wallet_grant_summary(project.wallet.id).by_category["promotional"] == 0
        with pytest.raises(InsufficientCredits):
            debit(project, "5.000001")
        assert ledger.grants_expire_due() == 1
        assert ledger.grants_expire_due() == 0
        assert ledger.grant_expire(grant_id=promo.id) is None
    expiry = Transfer.objects.get(kind=Transfer.Kind.GRANT_EXPIRY)
    assert expiry.amount == M("7")
    assert expiry.credit_account.code == Account.System.EXPIRED
    assert draws(expiry) == [(promo.id, M("7"))]
    closed = Grant.objects.get(id=promo.id)
    assert (closed.remaining, closed.closed_as, closed.closing_transfer_id) == (0, "expired", expiry.id)
    assert Transfer.objects.filter(kind=Transfer.Kind.GRANT_EXPIRY).count() == 1
    assert project_wallet_figures(project.id).balance == M("5")
    assert_books_balance()


def test_the_expiry_task_is_scheduled():
    from django_celery_beat.models import PeriodicTask

    assert PeriodicTask.objects.get(task="wallets.expire_grants").enabled


def test_a_scheduled_grant_is_not_spendable_before_it_is_effective():
    project = ProjectFactory(slug="acme")
    later = grant(project, "10", effective_at=timezone.now() + timedelta(days=1))
    assert project_wallet_figures(project.id).available == 0
    assert Grant.objects.get(id=later.id).status_at(timezone.now()) == "scheduled"
    with pytest.raises(InsufficientCredits):
        debit(project, "1")
    with time_machine.travel(timezone.now() + timedelta(days=1, seconds=1)):
        assert project_wallet_figures(project.id).available == M("10")
        assert draws(debit(project, "1")) == [(later.id, M("1"))]


def test_voiding_takes_only_the_unspent_rest_once_with_actor_and_reason():
    project = ProjectFactory(slug="acme")
    promo = grant(project, "10")
    debit(project, "4")
    voided = services.grant_void(grant=promo, reason="sent by mistake", actor="user:7")
    again = services.grant_void(grant=promo, reason="sent by mistake", actor="user:7")
    assert (voided.status_at(timezone.now()), voided.remaining, again.closing_transfer_id) == (
        "voided", 0, voided.closing_transfer_id)
    reversal = Transfer.objects.get(kind=Transfer.Kind.GRANT_VOID)
    assert (reversal.amount, reversal.actor, reversal.reason) == (M("6"), "user:7", "sent by mistake")
    assert reversal.credit_account.code == Account.System.VOIDED
    assert project_wallet_figures(project.id).balance == 0
    assert_books_balance()


def test_existing_balances_migrate_as_one_grant_per_wallet():
    migration = importlib.import_module("wallets.migrations.0014_grants_from_balances")
    ProjectFactory(slug="rich", balance="42.5")
    broke = ProjectFactory(slug="broke")
    GrantDraw.objects.all().delete()
    Grant.objects.all().delete()  # as before grants existed
    migration.balances_to_grants(apps, None)
    migration.balances_to_grants(apps, None)  # a wallet that has grants is left alone
    assert list(Grant.objects.values_list("wallet__project__slug", "category", "amount", "remaining")) == [
        ("rich", "purchased", M("42.5"), M("42.5"))]
    assert not Grant.objects.filter(wallet__project=broke).exists()
    assert_books_balance()


def test_check_ledger_catches_a_broken_grant_sum():
    project = ProjectFactory(slug="acme", balance="10")
    assert ledger_check().ok
    Grant.objects.filter(wallet__project=project).update(remaining=M("9"))
    report = ledger_check()
    assert not report.ok
    assert any("grants hold" in drift for drift in report.drifts)


def test_a_billing_batch_draws_each_charge_in_order_across_wallets():
    acme, globex = ProjectFactory(slug="acme"), ProjectFactory(slug="globex")
    a1, a2 = grant(acme, "10", priority=1), grant(acme, "10", priority=2)
    g1 = grant(globex, "3")
    ledger.transfer_many(transfers=[BulkTransfer(acme.id, M("6"), "u-a1"), BulkTransfer(globex.id, M("5"), "u-g1"),
                                    BulkTransfer(acme.id, M("6"), "u-a2")],
                         direction="out", system_code=Account.System.REVENUE, kind=Transfer.Kind.USAGE)
    by_key = {key: draws(Transfer.objects.get(idempotency_key=key)) for key in ("u-a1", "u-a2", "u-g1")}
    assert by_key == {"u-a1": [(a1.id, M("6"))], "u-a2": [(a1.id, M("4")), (a2.id, M("2"))],
                      "u-g1": [(g1.id, M("3"))]}  # globex overdrawn by 2
    assert remaining(a1, a2, g1) == [0, M("8"), 0]
    assert_books_balance()


def test_a_card_refund_takes_from_its_own_top_up_first():
    project = ProjectFactory(slug="acme")
    ledger.transfer(project=project, direction="in", system_code=Account.System.STRIPE, amount=M("20"),
                    kind=Transfer.Kind.TOP_UP, idempotency_key="top-up-1", metadata={"checkout_session": 41})
    ledger.transfer(project=project, direction="in", system_code=Account.System.STRIPE, amount=M("20"),
                    kind=Transfer.Kind.TOP_UP, idempotency_key="top-up-2", metadata={"checkout_session": 42})
    grant(project, "5", priority=0)  # first in the draw order for any other debit
    refund, _ = ledger.transfer(project=project, direction="out", system_code=Account.System.STRIPE, amount=M("8"),
                                kind=Transfer.Kind.REFUND, idempotency_key="refund-1", metadata={"checkout_session": 42})
    second = Grant.objects.get(source_transfer__idempotency_key="top-up-2")
    assert draws(refund) == [(second.id, M("8"))]
    assert_books_balance()
