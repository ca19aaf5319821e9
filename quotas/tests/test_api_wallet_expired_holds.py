"""A hold past its expiry is freed for every reader, as admission already treats it, before the
expiry task runs: the wallet API, the admission check, the portal and the admin agree."""

import re
from datetime import timedelta

from django.utils import timezone

from quotas.models import Reservation
from quotas.tasks import expire_reservations
from quotas.tests.helpers import CHECK, ledger_is_consistent, reserve, wallet
from wallets.tests.factories import UserFactory, member


def _overdue(reservation_id: int) -> None:
    Reservation.objects.filter(id=reservation_id).update(expires_at=timezone.now() - timedelta(seconds=1))


def test_the_wallet_does_not_count_an_expired_hold_as_reserved(platform, project):
    live = reserve(platform, amount="5").json()
    overdue = reserve(platform, amount="30").json()
    _overdue(overdue["id"])
    body = wallet(platform)
    assert (body["balance"], body["reserved"], body["available"]) == ("100", "5", "95")
    check = platform.post(CHECK, {"project": "acme", "resource_type": "vm", "quantity": "1", "amount": "95"},
                          format="json").json()
    assert (check["allowed"], check["available"]) == (True, "95")
    # The expiry task changes what is stored, not what anyone reads.
    assert expire_reservations() == 1
    after = wallet(platform)
    assert (after["balance"], after["reserved"], after["available"]) == ("100", "5", "95")
    assert Reservation.objects.get(id=live["id"]).status == "pending"
    assert ledger_is_consistent()


def test_the_portal_and_the_admin_show_the_wallet_as_admission_does(platform, project, client):
    _overdue(reserve(platform, amount="30").json()["id"])
    client.force_login(member(project))
    html = client.get("/portal/acme/").content.decode()
    assert re.search(r"<dt>Reserved</dt><dd[^>]*>0<", html)
    assert re.search(r'data-testid="available">100<', html)
    index = client.get("/portal/").content.decode()
    assert re.search(r"<dt>Available</dt><dd[^>]*>100<", index)
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    changelist = client.get("/admin/wallets/project/").content.decode()
    assert re.search(r'<td class="field-reserved">0</td><td class="field-available">100</td>', changelist)
    change = client.get(f"/admin/wallets/project/{project.pk}/change/").content.decode()
    assert re.search(r'field-reserved.*?<div class="readonly">0</div>', change, re.DOTALL)
    assert re.search(r'field-available.*?<div class="readonly">100</div>', change, re.DOTALL)


def test_a_debit_refused_only_by_an_expired_hold_releases_it_and_goes_through(platform, project):
    overdue = reserve(platform, amount="30").json()
    _overdue(overdue["id"])
    response = platform.post_idem("/api/v1/projects/acme/wallet/debit", {"amount": "100", "reason": "all of it"})
    assert response.status_code == 201, response.json()
    assert Reservation.objects.get(id=overdue["id"]).status == "expired"
    assert wallet(platform)["balance"] == "0"
    assert ledger_is_consistent()


def test_a_refused_debit_says_what_is_available(platform, project):
    reserve(platform, amount="30")
    response = platform.post_idem("/api/v1/projects/acme/wallet/debit", {"amount": "80", "reason": "too much"})
    assert response.status_code == 402
    assert (response.json()["error"], response.json()["available"]) == ("insufficient_credits", "70")
