"""Staff read amounts in the admin as the API writes them ("260.9", "100", "3", "0.04"), on lists and on detail
pages alike, whether they may edit the row or only view it; forms take decimals and store exact integers; a
broken database constraint is told in words, not by its name."""

import re

import pytest
from django.contrib.auth.models import Permission

from billing.models import BillingRun, OwedCharge, WebhookDelivery, WebhookEndpoint
from metering.models import Price
from payments.models import CheckoutSession
from quotas.models import Budget, Quota, ResourceType
from wallets.models import Account, Transfer
from wallets.tests.factories import ProjectFactory, UserFactory

pytestmark = pytest.mark.django_db


def text(response) -> str:
    assert response.status_code == 200, response.status_code
    return re.sub(r"\s+", " ", response.content.decode())


def readonly_values(page: str) -> list[str]:
    return re.findall(r'<div class="readonly">([^<]*)</div>', page)


@pytest.fixture
def acme(db):
    project = ProjectFactory(slug="acme", balance="260.9")
    Budget.objects.create(project=project, hard_limit=100_000_000, soft_limit=80_500_000)
    Quota.objects.create(project=project, resource_type=ResourceType.objects.get(code="vcpu"), limit=3_000_000,
                         used=1_500_000)
    return project


@pytest.fixture
def viewer(client):
    """Staff who may view everything and change nothing: every field is shown read-only."""
    user = UserFactory(is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__startswith="view_"))
    client.force_login(user)
    return client


def test_a_transfer_reads_in_credits_on_its_list_and_its_page(admin_client, acme):
    transfer = Transfer.objects.get(project=acme)
    listing = text(admin_client.get("/admin/wallets/transfer/"))
    detail = text(admin_client.get(f"/admin/wallets/transfer/{transfer.id}/change/"))
    for page in (listing, detail):
        assert "260.9" in page and "260900000" not in page
    assert readonly_values(detail).count("260.9") == 2  # the amount and the wallet balance after


def test_an_account_reads_in_credits_on_its_page(admin_client, acme):
    page = text(admin_client.get(f"/admin/wallets/account/{Account.objects.get(project=acme).id}/change/"))
    assert "260.9" in readonly_values(page) and "260900000" not in page


@pytest.mark.parametrize("who", ["superuser", "viewer"])
def test_budget_and_quota_read_as_decimals_on_the_project_page(request, acme, who):
    client = request.getfixturevalue("admin_client" if who == "superuser" else "viewer")
    page = text(client.get(f"/admin/wallets/project/{acme.id}/change/"))
    for wrong in ("1E+2", "100000000", "3.000000", "3000000", "80500000", "1500000"):
        assert wrong not in page, wrong
    if who == "superuser":  # typed in the form
        assert 'value="100"' in page and 'value="80.5"' in page and 'value="3"' in page
        assert "1.5" in page  # used, read-only beside the limit
    else:
        assert {"100", "80.5", "3", "1.5"} <= {value.strip() for value in readonly_values(page)} | set(
            re.findall(r'<td class="field-[a-z_]+">\s*<p>([^<]*)</p>', page))


@pytest.mark.parametrize("who", ["superuser", "viewer"])
def test_a_price_reads_as_credits_per_unit(request, db, who):
    client = request.getfixturevalue("admin_client" if who == "superuser" else "viewer")
    price = Price.objects.filter(resource_type__code="vm").first()
    listing = text(client.get("/admin/metering/price/"))
    detail = text(client.get(f"/admin/metering/price/{price.id}/change/"))
    for page in (listing, detail):
        assert "0.04" in page and "40000000000" not in page and "0.040000000000" not in page


def test_a_checkout_session_reads_in_credits_and_currency(admin_client, acme):
    session = CheckoutSession.objects.create(project=acme, stripe_session_id="cs_test_1", amount=25_500_000,
                                             currency="usd", currency_amount=2550)
    page = text(admin_client.get(f"/admin/payments/checkoutsession/{session.id}/change/"))
    assert "25.5" in readonly_values(page) and "25500000" not in page
    assert "25.50 USD" in page and ">2550<" not in page


def test_a_billing_run_shows_its_failures_as_a_table_not_json(admin_client, acme):
    run = BillingRun.objects.create(window_start="2026-11-22T04:00:00Z", window_end="2026-11-22T05:00:00Z",
                                    credits_charged=12_500_000, failures=[
                                        {"project_id": acme.id, "resource_type_id": ResourceType.objects.get(code="vm").id,
                                         "window_start": "2026-11-22T04:00:00+00:00", "reason": "no_price: vm has none"}])
    listing = text(admin_client.get("/admin/billing/billingrun/"))
    page = text(admin_client.get(f"/admin/billing/billingrun/{run.id}/change/"))
    assert "12.5" in listing and "12500000" not in listing
    assert "12.5" in readonly_values(page)
    assert "<td>acme</td><td>vm</td>" in page and "no_price: vm has none" in page
    assert '"project_id"' not in page and "&quot;project_id&quot;" not in page


def test_an_owed_charge_shows_its_failures_as_a_table(admin_client, acme):
    run = BillingRun.objects.create(window_start="2026-11-22T04:00:00Z", window_end="2026-11-22T05:00:00Z")
    owed = OwedCharge.objects.create(run=run, project=acme, first_project_id=acme.id, last_project_id=acme.id,
                                     last_error="boom", failures=[{"project_id": acme.id, "resource_type_id": None,
                                                                   "window_start": None, "reason": "boom"}])
    page = text(admin_client.get(f"/admin/billing/owedcharge/{owed.id}/change/"))
    assert "<td>acme</td><td>-</td><td>-</td><td>boom</td>" in page


def test_webhook_event_types_are_ticked_from_the_known_events(admin_client, acme):
    page = text(admin_client.get("/admin/billing/webhookendpoint/add/"))
    for event in WebhookEndpoint.Event.values:
        assert f'value="{event}"' in page and 'type="checkbox"' in page
    response = admin_client.post("/admin/billing/webhookendpoint/add/", {
        "url": "https://hooks.example.com/in", "enabled": "on",
        "event_types": ["project.suspended", "project.grace"], "description": ""})
    assert response.status_code == 200, response.content.decode()[-2000:]  # the page that shows the secret once
    assert WebhookEndpoint.objects.get().event_types == ["project.grace", "project.suspended"]
    response = admin_client.post("/admin/billing/webhookendpoint/add/", {
        "url": "https://hooks.example.com/2", "enabled": "on", "event_types": ["project.deleted"]})
    assert "project.deleted is not one of the available choices" in text(response)


def test_webhook_deliveries_name_their_project(admin_client, acme, django_assert_max_num_queries):
    endpoint = WebhookEndpoint.objects.create(url="https://hooks.example.com/in")
    for _ in range(3):
        WebhookDelivery.objects.create(endpoint=endpoint, event_id="evt_1", event_type="project.grace",
                                       payload={"id": "evt_1", "type": "project.grace", "data": {"project": "acme"}})
    listing = text(admin_client.get("/admin/billing/webhookdelivery/"))
    assert '<td class="field-project">acme</td>' in listing


def test_a_broken_constraint_is_told_in_words(admin_client, acme, monkeypatch):
    # The form's own checks are lifted, so the model's CHECK speaks (as for a form that forgot one).
    from quotas.admin import BudgetForm

    monkeypatch.setattr(BudgetForm, "clean", lambda self: self.cleaned_data)
    Budget.objects.filter(project=acme).delete()
    response = admin_client.post(f"/admin/wallets/project/{acme.id}/change/", {
        "slug": "acme", "name": acme.name, "grace_period_hours": "", "min_runtime_hours": "",
        "memberships-TOTAL_FORMS": "0", "memberships-INITIAL_FORMS": "0",
        "quotas-TOTAL_FORMS": "0", "quotas-INITIAL_FORMS": "0",
        "budget-TOTAL_FORMS": "1", "budget-INITIAL_FORMS": "0",
        "budget-0-hard_limit": "10", "budget-0-soft_limit": "20", "budget-0-project": acme.id})
    page = text(response)
    assert "budget_soft_limit_within_hard" not in page
    assert "The soft limit must not be negative nor exceed the hard limit." in page
    assert not Budget.objects.filter(project=acme).exists()


def test_forms_take_decimals_and_store_exact_integers(admin_client, acme):
    from django.utils import timezone

    vm = ResourceType.objects.get(code="vm")
    later = (timezone.now() + timezone.timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S")
    response = admin_client.post("/admin/metering/price/add/", {
        "resource_type": vm.id, "unit_price": "0.000011111111", "per": "unit_hour",
        "effective_from_0": later[:10], "effective_from_1": later[11:]})
    assert response.status_code == 302, text(response)[-3000:]
    assert Price.objects.filter(resource_type=vm).order_by("-effective_from").first().unit_price == 11_111_111
    response = admin_client.post("/admin/metering/price/add/", {
        "resource_type": vm.id, "unit_price": "1e2", "per": "unit_hour",
        "effective_from_0": later[:10], "effective_from_1": later[11:]})
    assert "must be a decimal" in text(response)
