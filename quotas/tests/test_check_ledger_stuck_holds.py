"""`manage.py check_ledger` reports holds that are stuck: pending reservations long past their expiry
(each named), and wallet or quota `reserved` that disagrees with the pending holds."""

from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from quotas.models import Quota, Reservation
from quotas.tests.helpers import reserve, units
from wallets.models import Account


def _expired_ago(reservation_id: int, minutes: int) -> None:
    Reservation.objects.filter(id=reservation_id).update(expires_at=timezone.now() - timedelta(minutes=minutes))


def _drifts(capsys) -> str:
    with pytest.raises(CommandError):
        call_command("check_ledger")
    return capsys.readouterr().err


def test_a_pending_hold_long_past_its_expiry_is_named(platform, project, capsys):
    stuck = reserve(platform, resource_type="vcpu", quantity="2", amount="5").json()
    _expired_ago(stuck["id"], 11)
    err = _drifts(capsys)
    assert f"reservation {stuck['id']} of project 'acme' (2 vcpu, 5 credits held) is still pending 11 minutes" in err
    assert "the expiry task is not releasing it" in err


def test_a_hold_that_just_expired_is_not_stuck(platform, project, capsys):
    _expired_ago(reserve(platform, amount="5").json()["id"], 2)
    call_command("check_ledger")
    assert "ledger ok" in capsys.readouterr().out


def test_a_wallet_reserved_that_disagrees_with_its_holds_is_reported(platform, project, capsys):
    reserve(platform, amount="5")
    Account.objects.filter(project=project).update(reserved=0)  # the hold's credits are no longer held
    assert "wallet of project 'acme': reserved 0 != 5000000 held by its pending reservations" in _drifts(capsys)


def test_a_quota_reserved_that_disagrees_with_its_holds_is_reported(platform, project, capsys):
    reserve(platform, resource_type="vcpu", quantity="2")
    Quota.objects.filter(project=project).update(reserved=units("0.5"))
    assert "quota vcpu of project 'acme': reserved 0.5 != 2 held by its pending reservations" in _drifts(capsys)


def test_many_stuck_holds_are_named_up_to_a_bound_and_counted(platform, project, capsys, monkeypatch):
    from quotas import selectors

    monkeypatch.setattr(selectors, "STUCK_HOLDS_NAMED", 2)
    for _ in range(3):
        _expired_ago(reserve(platform, amount="1").json()["id"], 30)
    err = _drifts(capsys)
    assert err.count("is still pending") == 2
    assert "and 1 more pending reservations long past their expiry" in err
