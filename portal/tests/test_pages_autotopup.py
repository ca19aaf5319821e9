"""/portal/<project>/auto-top-up: owners save a card (Checkout in setup mode), agree to the terms and turn
it on; members only read it; what an automatic charge did (and why it turned off) shows here."""

import pytest
from django.test import Client

from payments.models import AutoTopUp, AutoTopUpCharge
from payments.tests.conftest import WebhookSender
from wallets.models import Membership
from wallets.tests.factories import UserFactory, member

pytestmark = pytest.mark.django_db

PAGE = "/portal/acme/auto-top-up"
SETTINGS = {"enabled": "on", "threshold": "20", "target": "100", "monthly_cap": "300", "consent": "on"}


@pytest.fixture
def owner(project) -> Client:
    client = Client()
    client.force_login(member(project, UserFactory(username="olga"), role=Membership.Role.OWNER))
    return client


def save_a_card(owner: Client, fake_stripe) -> None:
    response = owner.post(f"{PAGE}/card", {"token": "t" * 24})
    assert response.status_code == 303, response.content
    session = fake_stripe.last_session()
    assert response["Location"] == session["url"] and session["mode"] == "setup"
    assert WebhookSender(Client()).send(fake_stripe.complete_setup(session["id"])).json()["status"] == "processed"


def test_an_owner_saves_a_card_agrees_and_turns_it_on(owner, fake_stripe, project):
    fake_stripe.deliver_on_pay = False
    page = owner.get(PAGE).content.decode()
    assert "No card is saved yet" in page and "Save a card" in page and "charge the saved card" in page
    save_a_card(owner, fake_stripe)
    response = owner.post(PAGE, SETTINGS)
    assert response.status_code == 303, response.content.decode()
    row = AutoTopUp.objects.get(project=project)
    assert row.enabled and (row.threshold, row.target, row.monthly_cap) == (20_000_000, 100_000_000, 300_000_000)
    assert row.consent_at is not None and row.consent_by.startswith("user:")
    assert "Auto top-up is <strong>on</strong>" in owner.get(PAGE).content.decode()


def test_it_is_not_turned_on_without_consent_or_a_card(owner, fake_stripe, project):
    response = owner.post(PAGE, {**SETTINGS, "consent": ""})
    assert response.status_code == 400
    assert "Save a card first" in response.content.decode()
    assert not AutoTopUp.objects.filter(project=project, enabled=True).exists()


def test_a_target_not_above_the_threshold_is_shown_beside_the_field(owner, fake_stripe):
    response = owner.post(PAGE, {**SETTINGS, "enabled": "", "target": "10"})
    assert response.status_code == 400 and "The target must be above the threshold" in response.content.decode()


def test_a_member_reads_it_but_cannot_change_it(browser, fake_stripe, project):
    assert browser.get(PAGE).status_code == 200
    assert browser.post(PAGE, SETTINGS).status_code == 403
    assert browser.post(f"{PAGE}/card", {"token": "t" * 24}).status_code == 403
    assert not fake_stripe.created_sessions


def test_why_it_turned_itself_off_is_shown(owner, project):
    AutoTopUp.objects.create(project=project, threshold=1, target=2_000_000, monthly_cap=5_000_000,
                             disabled_reason="turned off after 3 failed charges in a row (last: declined)")
    AutoTopUpCharge.objects.create(project=project, crossing=1, available_before=0, status="failed",
                                   error="declined: Your card was declined.")
    page = owner.get(PAGE).content.decode()
    assert "Auto top-up is off: turned off after 3 failed charges" in page and "Your card was declined" in page
