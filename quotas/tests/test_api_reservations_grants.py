"""Reservations and credit grants, on both admission paths: a hold counts only credits that last until
it expires (refused at reserve time otherwise), a commit draws from the grants, and credits of a grant
that expired are not admitted even before the expiry task ran."""

from datetime import timedelta

import time_machine
from django.utils import timezone

from creditservice.lib.money import credits_to_micros
from creditservice.testing.invariants import assert_books_balance
from quotas.tests.helpers import commit, reserve, wallet
from wallets import ledger, services
from wallets.models import Grant, GrantDraw, Transfer
from wallets.tests.factories import ProjectFactory

_keys = iter(range(10**9))


def _promotion(project, credits: str, **terms) -> Grant:
    return services.grant_create(project=project, category="promotional", amount=credits_to_micros(credits),
                                 reason="test", actor="system", idempotency_key=f"promo-{next(_keys)}", **terms)


def test_a_reservation_is_refused_when_its_credits_expire_before_it_does(platform, db):
    project = ProjectFactory(slug="acme")
    _promotion(project, "50", expires_at=timezone.now() + timedelta(seconds=60))
    refused = reserve(platform, amount="10", ttl_seconds=300)
    assert refused.status_code == 402, refused.json()
    assert refused.json()["error"] == "insufficient_credits"
    # The refusal says what the decision counted: none of the 50 lasts until the hold's end.
    assert (refused.json()["available"], refused.json()["requested"]) == ("0", "10")
    # A hold that expires before the grant does is admitted against it.
    assert reserve(platform, amount="10", ttl_seconds=30).status_code == 201
    assert_books_balance()


def test_a_pending_reservation_stays_committable_after_another_grant_expires(platform, db):
    project = ProjectFactory(slug="acme", balance="20")  # granted, no expiry
    promo = _promotion(project, "30", priority=0, expires_at=timezone.now() + timedelta(seconds=120))
    held = reserve(platform, amount="20", ttl_seconds=600)
    assert held.status_code == 201, held.json()  # counted on the 20 that last, not on the promotion
    with time_machine.travel(timezone.now() + timedelta(seconds=180)):
        assert wallet(platform)["available"] == "0"  # the promotion is expired at once
        assert reserve(platform, amount="1", ttl_seconds=30).status_code == 402
        assert ledger.grants_expire_due() == 1
        done = commit(platform, held.json()["id"])
        assert done.status_code == 200, done.json()
    charge = Transfer.objects.get(kind=Transfer.Kind.RESERVATION)
    drawn = list(GrantDraw.objects.filter(transfer=charge).values_list("grant__category", "amount"))
    assert drawn == [("granted", credits_to_micros("20"))]
    assert Grant.objects.get(id=promo.id).closed_as == "expired"
    assert wallet(platform)["balance"] == "0"
    assert_books_balance()


def test_a_commit_draws_from_the_grants_in_order(platform, db):
    project = ProjectFactory(slug="acme", balance="10")
    promo = _promotion(project, "5")
    held = reserve(platform, amount="8")
    assert held.status_code == 201
    assert commit(platform, held.json()["id"], amount="7").status_code == 200
    charge = Transfer.objects.get(kind=Transfer.Kind.RESERVATION)
    drawn = list(GrantDraw.objects.filter(transfer=charge).order_by("id").values_list("grant_id", "amount"))
    granted = Grant.objects.get(category="granted").id
    assert drawn == [(promo.id, credits_to_micros("5")), (granted, credits_to_micros("2"))]
    assert_books_balance()
