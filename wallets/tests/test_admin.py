"""Staff screens: money is read-only; credits move only through the adjustment form."""

import re

import pytest

from wallets.models import ApiKey, Project, Transfer
from wallets.selectors import ledger_check


def test_project_pages_render_and_show_the_wallet(admin_client, project):
    assert admin_client.get("/admin/wallets/project/").status_code == 200
    page = admin_client.get(f"/admin/wallets/project/{project.pk}/change/").content.decode()
    assert "Credit / debit wallet" in page
    assert 'name="balance"' not in page and 'name="reserved"' not in page


def test_no_admin_form_can_edit_a_balance(admin_client, project):
    account = project.wallet
    assert admin_client.get(f"/admin/wallets/account/{account.pk}/change/").content.decode().count('name="balance"') == 0
    admin_client.post(f"/admin/wallets/account/{account.pk}/change/", {"balance": "999"})
    account.refresh_from_db()
    assert account.balance == 100_000_000


def test_the_adjustment_form_credits_through_the_ledger_once(admin_client, project):
    url = f"/admin/wallets/project/{project.pk}/adjust/"
    token = re.search(r'name="token" value="([0-9a-f]+)"', admin_client.get(url).content.decode()).group(1)
    form = {"direction": "credit", "amount": "2.5", "reason": "support ticket 42", "token": token}
    assert admin_client.post(url, form).status_code == 302
    assert admin_client.post(url, form).status_code == 302  # a double submit of the same form
    project.wallet.refresh_from_db()
    assert project.wallet.balance == 102_500_000
    transfer = Transfer.objects.get(reason="support ticket 42")
    assert transfer.actor.startswith("user:")
    assert ledger_check().ok


def test_a_debit_beyond_available_is_shown_as_an_error(admin_client, project):
    url = f"/admin/wallets/project/{project.pk}/adjust/"
    response = admin_client.post(url, {"direction": "debit", "amount": "500", "reason": "x", "token": "t1"})
    assert response.status_code == 200
    assert "not enough available credits" in response.content.decode()
    project.wallet.refresh_from_db()
    assert project.wallet.balance == 100_000_000


def test_bad_amounts_are_form_errors(admin_client, project):
    url = f"/admin/wallets/project/{project.pk}/adjust/"
    response = admin_client.post(url, {"direction": "credit", "amount": "1.0000001", "reason": "x", "token": "t"})
    assert "at most 6 decimal places" in response.content.decode()


def test_creating_a_project_in_the_admin_gives_it_a_wallet(admin_client, db):
    response = admin_client.post("/admin/wallets/project/add/", {
        "slug": "from-admin", "name": "From admin", "status": "active",
        "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0",
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    assert Project.objects.get(slug="from-admin").wallet.balance == 0


def test_transfers_are_listed_searchable_and_exported_as_csv(admin_client, project):
    assert admin_client.get("/admin/wallets/transfer/?q=acme").status_code == 200
    ids = list(Transfer.objects.values_list("id", flat=True))
    response = admin_client.post("/admin/wallets/transfer/", {"action": "export_csv", "_selected_action": ids})
    lines = response.content.decode().strip().splitlines()
    assert lines[0].startswith("id,created_at,project,kind,amount")
    assert ",acme,credit,100," in lines[1]


def test_an_api_key_made_in_the_admin_is_shown_once(admin_client, db):
    response = admin_client.post("/admin/wallets/apikey/add/", {"name": "gateway"}, follow=True)
    page = response.content.decode()
    raw = re.search(r"<code>(cs_[^<]+)</code>", page).group(1)
    key = ApiKey.objects.get(name="gateway")
    assert raw.startswith(key.prefix)
    assert raw not in admin_client.get(f"/admin/wallets/apikey/{key.pk}/change/").content.decode()


def test_a_grace_period_or_runtime_override_beyond_a_year_is_refused(db):
    from django.core.exceptions import ValidationError

    from wallets.tests.factories import ProjectFactory

    project = ProjectFactory(slug="acme")
    for field in ("grace_period_hours", "min_runtime_hours"):
        setattr(project, field, 10**9)  # now + 10^9 hours is past datetime's range: a 500 in the sweep
        with pytest.raises(ValidationError) as refused:
            project.full_clean()
        assert field in refused.value.message_dict
        setattr(project, field, 24 * 366)
    project.full_clean()
