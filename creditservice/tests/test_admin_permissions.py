"""Every admin action and every custom admin view states its permission; a view-only staff user runs none.

The admins are read from admin.site._registry and their custom views from their URL patterns, so a new
action or view cannot be forgotten: it fails here until it declares a permission (and, for a view, is
listed in CUSTOM_VIEWS with the refusal a view-only user gets).
"""

import pytest
from django.contrib import admin
from django.contrib.auth.models import Permission
from django.test import RequestFactory
from django.urls import reverse

from creditservice.testing.fixtures import ServiceClient
from quotas.models import Reservation
from wallets.auth import api_key_create, principal_for_key
from wallets.models import ApiKey, Grant, Project
from wallets.tests.factories import ProjectFactory, UserFactory, platform_key

pytestmark = pytest.mark.django_db

# The URL names ModelAdmin.get_urls() makes for every model; anything else is a custom view.
_STANDARD_VIEWS = ("_changelist", "_add", "_history", "_delete", "_change")

# Custom admin views (URL name → keyword arguments to reverse it), each refused (403) to a view-only user.
CUSTOM_VIEWS = {
    "wallets_project_adjust": {"project_id": 1},
    "wallets_project_suspend": {"project_id": 1},
    "billing_billingrun_run": {},
    "wallets_apikey_revoke": {"api_key_id": 1},
    "wallets_grant_void": {"grant_id": 1},
}


def view_only_staff():
    user = UserFactory(is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__startswith="view_"))
    return user


def _admins():
    return sorted(admin.site._registry.items(), key=lambda item: item[0]._meta.label)


def _request(user):
    request = RequestFactory().get("/admin/")
    request.user = user
    return request


def test_every_admin_action_declares_its_permissions():
    undeclared, unchecked = [], []
    for model, model_admin in _admins():
        for func, name, _ in model_admin._get_base_actions():
            permissions = getattr(func, "allowed_permissions", ())
            if not permissions:
                undeclared.append(f"{model._meta.label}: {name}")
            for permission in permissions:
                if not callable(getattr(model_admin, f"has_{permission}_permission", None)):
                    unchecked.append(f"{model._meta.label}: {name} needs has_{permission}_permission")
    assert undeclared == [], "admin actions without permissions=[...]"
    assert unchecked == []
    assert sum(len(model_admin._get_base_actions()) for _, model_admin in _admins()) >= 15


# Actions that only read, and so are a viewer's: the one reading permission each states is view.
READING_ACTIONS = {"wallets.Transfer: export_csv"}


def test_a_view_only_staff_user_is_offered_no_action_that_writes():
    user = view_only_staff()
    offered = {f"{model._meta.label}: {name}" for model, model_admin in _admins()
               for name in model_admin.get_actions(_request(user))}
    assert offered == READING_ACTIONS
    assert UserFactory(is_staff=True).get_all_permissions() == set()
    nobody = {name for _, model_admin in _admins() for name in model_admin.get_actions(_request(UserFactory(is_staff=True)))}
    assert nobody == set()


def test_a_superuser_is_offered_every_action():
    user = UserFactory(is_staff=True, is_superuser=True)
    for model, model_admin in _admins():
        base = {name for _, name, _ in model_admin._get_base_actions()}
        if not model_admin.has_delete_permission(_request(user)):
            base.discard("delete_selected")  # money and history: deleting is off for everyone
        assert set(model_admin.get_actions(_request(user))) == base, model._meta.label


# Custom admin views that only read, open to staff who may view what they show (URL name → why).
READ_VIEWS = {
    "billing_project_statement": "a project's monthly statement: staff with wallets.view_project read it, as in the API",
}


def test_every_custom_admin_view_is_listed():
    custom = {pattern.name for _, model_admin in _admins() for pattern in model_admin.get_urls()
              if pattern.name and not pattern.name.endswith(_STANDARD_VIEWS)}
    assert custom == set(CUSTOM_VIEWS) | set(READ_VIEWS)


@pytest.mark.parametrize("name", sorted(CUSTOM_VIEWS))
def test_a_view_only_staff_user_is_refused_every_custom_view(client, name):
    ProjectFactory(slug="acme", balance="100")
    api_key_create(name="gateway")
    ids = {"project_id": Project.objects.get().pk, "api_key_id": ApiKey.objects.get().pk,
           "grant_id": Grant.objects.get().pk}
    kwargs = {key: ids[key] for key in CUSTOM_VIEWS[name]}
    client.force_login(view_only_staff())
    url = reverse(f"admin:{name}", kwargs=kwargs)
    assert client.get(url).status_code == 403
    assert client.post(url, {"reason": "r", "direction": "credit", "amount": "1000000", "token": "t",
                             "window_start": "2020-01-01 00:00", "in_background": ""}).status_code == 403


def test_a_view_only_staff_user_cannot_revoke_api_keys(client):
    _, raw = api_key_create(name="gateway")
    client.force_login(view_only_staff())
    client.post("/admin/wallets/apikey/", {"action": "revoke", "_selected_action": list(ApiKey.objects.values_list("id", flat=True))})
    assert ApiKey.objects.filter(revoked_at__isnull=False).count() == 0
    assert principal_for_key(raw) is not None


def test_a_staff_user_with_the_permission_revokes_api_keys(client):
    api_key_create(name="gateway")
    user = UserFactory(is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_apikey", "change_apikey"]))
    client.force_login(user)
    client.post("/admin/wallets/apikey/", {"action": "revoke", "_selected_action": list(ApiKey.objects.values_list("id", flat=True))})
    assert ApiKey.objects.filter(revoked_at__isnull=True).count() == 0


def test_a_view_only_staff_user_cannot_release_reservations(client):
    ProjectFactory(slug="acme", balance="100")
    platform = ServiceClient(platform_key())
    reservation = platform.post_idem("/api/v1/reservations", {"project": "acme", "resource_type": "vm", "quantity": "1",
                                                             "amount": "1"}).json()
    client.force_login(view_only_staff())
    client.post("/admin/quotas/reservation/", {"action": "release", "_selected_action": [reservation["id"]]})
    assert Reservation.objects.get(id=reservation["id"]).status == Reservation.Status.PENDING


def test_a_view_only_staff_user_cannot_start_a_billing_run(client):
    from billing.models import BillingRun
    from metering import windows

    client.force_login(view_only_staff())
    start = windows.last_closed_window()[0]
    response = client.post(reverse("admin:billing_billingrun_run"), {"window_start": start.strftime("%Y-%m-%d %H:%M")})
    assert response.status_code == 403
    assert not BillingRun.objects.exists()
    assert "Run billing for a window" not in client.get("/admin/billing/billingrun/").content.decode()


def test_a_view_only_staff_user_cannot_run_the_beats_tasks(client):
    from django_celery_beat.models import PeriodicTask

    task = PeriodicTask.objects.filter(enabled=True).first()
    assert task is not None, "the data migrations ship the beat's schedule"
    client.force_login(view_only_staff())
    client.post("/admin/django_celery_beat/periodictask/", {"action": "disable_tasks", "_selected_action": [task.pk]})
    task.refresh_from_db()
    assert task.enabled
