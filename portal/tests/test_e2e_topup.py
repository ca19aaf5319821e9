"""End to end in a real browser: a tenant tops up by card and sees the credits arrive.

Debian's Chromium, driven by Playwright, against a live server and the local fake of Stripe
(no request leaves the machine): log in, choose an amount, pay on the fake checkout page (which
delivers the signed webhook to our /stripe/webhook), come back and see the new balance.
"""

import os
from pathlib import Path

import pytest

from payments.models import CheckoutSession
from wallets.tests.factories import ProjectFactory, UserFactory, member

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
OUTPUT = Path(__file__).resolve().parents[2] / "test-output"

# Playwright's sync API runs an event loop in this thread; our ORM calls here happen outside it.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_tenant_tops_up_by_card_and_sees_the_new_balance(live_server, fake_stripe):
    from playwright.sync_api import expect, sync_playwright

    fake_stripe.webhook_url = live_server.url + "/stripe/webhook"
    tenant = UserFactory(username="tenant-e2e")
    project = ProjectFactory(slug="acme", balance="10")
    member(project, tenant, role="owner")
    OUTPUT.mkdir(exist_ok=True)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{live_server.url}/accounts/login/")
            page.fill("#id_username", "tenant-e2e")
            page.fill("#id_password", "pw-for-tests-1")
            page.click("button[type=submit]")
            page.goto(f"{live_server.url}/portal/acme/")
            expect(page.get_by_test_id("balance")).to_contain_text("10")

            page.fill("#topup-amount", "25")
            page.get_by_role("button", name="Continue to payment").click()
            page.wait_for_url(f"{fake_stripe.base_url}/pay/**")
            expect(page.locator("body")).to_contain_text("25.00 USD")

            page.click("#pay")
            page.wait_for_url(f"{live_server.url}/portal/acme/topup/success**")
            expect(page.get_by_test_id("new-balance")).to_contain_text("35", timeout=15_000)

            page.goto(f"{live_server.url}/portal/acme/")
            expect(page.get_by_test_id("balance")).to_contain_text("35")
            page.screenshot(path=str(OUTPUT / "e2e-topup.png"), full_page=True)
        finally:
            browser.close()

    session = CheckoutSession.objects.get()
    assert session.status == CheckoutSession.Status.FUNDED
    project.wallet.refresh_from_db()
    assert project.wallet.balance == 35_000_000
