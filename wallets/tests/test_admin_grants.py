"""Staff void a grant's unspent rest from the admin: an action that needs wallets.void_grant and a reason."""

from django.contrib.auth.models import Permission

from creditservice.testing.invariants import assert_books_balance
from wallets.models import Grant, Transfer
from wallets.tests.factories import UserFactory

CHANGELIST = "/admin/wallets/grant/"


def void_url(grant) -> str:
    return f"/admin/wallets/grant/{grant.pk}/void/"


def staff(client, *codenames: str):
    user = UserFactory(is_staff=True)
    for codename in ("view_grant", *codenames):
        user.user_permissions.add(Permission.objects.get(codename=codename, content_type__app_label="wallets"))
    client.force_login(user)
    return user


def test_staff_void_a_grant_with_a_reason(client, project):
    user = staff(client, "void_grant")
    grant = Grant.objects.get()
    assert client.get(CHANGELIST).status_code == 200
    response = client.post(CHANGELIST, {"action": "void_action", "_selected_action": [grant.pk]})
    assert response.status_code == 302 and response["Location"] == void_url(grant)
    assert client.post(void_url(grant), {"reason": ""}).status_code == 200  # the form again: a reason is required
    assert Grant.objects.get().closed_at is None
    assert client.post(void_url(grant), {"reason": "duplicate credit"}).status_code == 302
    reversal = Transfer.objects.get(kind=Transfer.Kind.GRANT_VOID)
    assert (reversal.amount, reversal.actor, reversal.reason) == (grant.remaining, f"user:{user.pk}", "duplicate credit")
    assert Grant.objects.get().closed_as == "voided"
    assert_books_balance()


def test_view_only_staff_neither_see_the_action_nor_void(client, project):
    staff(client)
    grant = Grant.objects.get()
    assert "void_action" not in client.get(CHANGELIST).content.decode()
    assert client.post(void_url(grant), {"reason": "x"}).status_code == 403
    assert Grant.objects.get().closed_at is None
