"""Staff suspend a project (with a reason) and lift the suspension through admin actions that need
the wallets.suspend_project permission; the status field itself is read-only."""

from django.contrib.auth.models import Permission

from billing.models import ProjectStatusChange, WebhookDelivery, WebhookEndpoint
from wallets.models import Project
from wallets.tests.factories import UserFactory, fund

CHANGELIST = "/admin/wallets/project/"


def suspend_url(project) -> str:
    return f"/admin/wallets/project/{project.pk}/suspend/"


def staff(client, *permissions: str):
    user = UserFactory(is_staff=True)
    for codename in ("view_project", "change_project", *permissions):
        user.user_permissions.add(Permission.objects.get(codename=codename, content_type__app_label="wallets"))
    client.force_login(user)
    return user


def test_staff_suspend_a_project_with_a_reason(admin_client, project):
    WebhookEndpoint.objects.create(url="https://hooks.example.com/cs")
    response = admin_client.post(CHANGELIST, {"action": "suspend_action", "_selected_action": [project.pk]})
    assert response.status_code == 302 and response["Location"] == suspend_url(project)
    assert admin_client.post(suspend_url(project), {"reason": "abuse report #7"}).status_code == 302
    project.refresh_from_db()
    assert (project.status, project.suspended_by_staff, project.suspension_reason) == ("suspended", True,
                                                                                        "abuse report #7")
    assert ProjectStatusChange.objects.get(project=project).to_status == "suspended"
    assert WebhookDelivery.objects.get().event_type == "project.suspended"
    # Money does not lift it.
    fund(project, "5")
    project.refresh_from_db()
    assert project.status == "suspended"


def test_a_suspension_without_a_reason_is_refused(admin_client, project):
    response = admin_client.post(suspend_url(project), {"reason": "  "})
    assert response.status_code == 200
    assert "This field is required." in response.content.decode()
    project.refresh_from_db()
    assert project.status == "active" and not ProjectStatusChange.objects.exists()


def test_staff_lift_the_suspension(admin_client, project):
    admin_client.post(suspend_url(project), {"reason": "abuse report #7"})
    response = admin_client.post(CHANGELIST, {"action": "lift_suspension_action", "_selected_action": [project.pk]})
    assert response.status_code == 302
    project.refresh_from_db()
    assert (project.status, project.suspended_by_staff) == ("active", False)
    assert list(ProjectStatusChange.objects.order_by("id").values_list("to_status", flat=True)) == ["suspended", "active"]


def test_suspending_needs_the_permission(client, project):
    staff(client)
    assert client.get(suspend_url(project)).status_code == 403
    assert client.post(suspend_url(project), {"reason": "x"}).status_code == 403
    # The actions are not offered without it either.
    page = client.get(CHANGELIST).content.decode()
    assert "suspend_action" not in page and "lift_suspension_action" not in page
    assert Project.objects.get(pk=project.pk).status == "active"


def test_a_staff_member_with_the_permission_may_suspend(client, project):
    staff(client, "suspend_project")
    assert "suspend_action" in client.get(CHANGELIST).content.decode()
    assert client.post(suspend_url(project), {"reason": "contract ended"}).status_code == 302
    assert Project.objects.get(pk=project.pk).status == "suspended"


def test_the_status_cannot_be_edited_as_a_field(admin_client, project):
    page = admin_client.get(f"/admin/wallets/project/{project.pk}/change/").content.decode()
    assert 'name="status"' not in page and 'name="suspended_by_staff"' not in page
    admin_client.post(f"/admin/wallets/project/{project.pk}/change/", {
        "name": project.name, "status": "suspended", "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0",
        "quotas-TOTAL_FORMS": "0", "quotas-INITIAL_FORMS": "0", "budget-TOTAL_FORMS": "0", "budget-INITIAL_FORMS": "0",
    })
    assert Project.objects.get(pk=project.pk).status == "active"
