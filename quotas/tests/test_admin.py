"""Staff screens: quotas and budget inline on the project, reservations read-only with a release action."""


from quotas.models import Budget, Quota, Reservation, ResourceType
from quotas.tests.helpers import reserve, units, wallet


def _inline_post(project, **extra) -> dict:
    data = {
        "slug": project.slug, "name": project.name, "status": "active", "grace_until": "",
        "grace_period_hours": "", "min_runtime_hours": "",
        "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0",
        "quotas-TOTAL_FORMS": "0", "quotas-INITIAL_FORMS": "0",
        "budget-TOTAL_FORMS": "0", "budget-INITIAL_FORMS": "0",
    }
    data.update(extra)
    return data


def test_the_project_page_shows_quotas_and_budget(admin_client, platform, project):
    reserve(platform, resource_type="vcpu", quantity="2")
    page = admin_client.get(f"/admin/wallets/project/{project.id}/change/").content.decode()
    assert "quotas-TOTAL_FORMS" in page and "budget-TOTAL_FORMS" in page


def test_staff_set_a_quota_and_a_budget_in_credits_inline(admin_client, project):
    vcpu = ResourceType.objects.get(code="vcpu")
    response = admin_client.post(f"/admin/wallets/project/{project.id}/change/", _inline_post(
        project,
        **{"quotas-TOTAL_FORMS": "1", "quotas-0-resource_type": vcpu.id, "quotas-0-limit": "12",
           "quotas-0-project": project.id,
           "budget-TOTAL_FORMS": "1", "budget-0-hard_limit": "250.5", "budget-0-soft_limit": "200",
           "budget-0-project": project.id},
    ))
    assert response.status_code == 302, response.content.decode()[-3000:]
    assert Quota.objects.get(project=project, resource_type=vcpu).limit == units("12")
    assert (Budget.objects.get(project=project).hard_limit, Budget.objects.get(project=project).soft_limit) == (
        250_500_000, 200_000_000)


def test_reservations_are_listed_filtered_and_released_by_an_action(admin_client, platform, project):
    created = reserve(platform, amount="10").json()
    assert admin_client.get("/admin/quotas/reservation/?status__exact=pending").status_code == 200
    assert admin_client.get(f"/admin/quotas/reservation/{created['id']}/change/").status_code == 200
    response = admin_client.post("/admin/quotas/reservation/", {"action": "release", "_selected_action": [created["id"]]})
    assert response.status_code == 302
    assert Reservation.objects.get(id=created["id"]).status == "released"
    assert wallet(platform)["reserved"] == "0"


def test_resource_types_and_the_expiry_schedule_are_in_the_admin(admin_client, db):
    assert admin_client.get("/admin/quotas/resourcetype/").status_code == 200
    assert "Expire overdue reservations" in admin_client.get("/admin/django_celery_beat/periodictask/").content.decode()
