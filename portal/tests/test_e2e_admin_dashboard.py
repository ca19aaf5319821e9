"""End to end in a real browser: a superuser signs in to the admin and reads the staff dashboard.

Debian's Chromium, driven by Playwright, against a live server, as portal/tests/test_e2e_topup.py does:
sign in on the admin's own form, read the credits outstanding, the chart's 30 days and the suspended
count, then follow the suspended count to the project list filtered to exactly those projects.
"""

import pytest
from django.utils import timezone

from wallets.tests.factories import ProjectFactory, UserFactory

from .staff_dashboard_data import billing_run, hour_of, set_status
from .test_e2e_topup import CHROMIUM, CHROMIUM_ARGS, OUTPUT


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_a_superuser_reads_the_dashboard_and_follows_a_count_to_its_projects(live_server):
    from playwright.sync_api import expect, sync_playwright

    UserFactory(username="ops-e2e", is_staff=True, is_superuser=True)
    ProjectFactory(slug="acme", balance="1234.5")
    set_status(ProjectFactory(slug="late-payer", balance="0.25"), "suspended")
    set_status(ProjectFactory(slug="also-late"), "suspended")
    ProjectFactory(slug="still-active")
    billing_run(hour_of(timezone.now().date()), "7.5")
    OUTPUT.mkdir(exist_ok=True)

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.goto(f"{live_server.url}/admin/")
            page.fill("#id_username", "ops-e2e")
            page.fill("#id_password", "pw-for-tests-1")
            page.click("input[type=submit]")
            page.wait_for_url(f"{live_server.url}/admin/")

            expect(page.get_by_test_id("credits-outstanding")).to_have_text("1,234.75")
            chart = page.get_by_test_id("credits-charged")
            expect(chart.locator("svg[role=img] rect")).to_have_count(30)
            expect(chart.locator("figcaption")).to_contain_text("7.5 credits charged")
            suspended = page.get_by_test_id("projects-suspended")
            expect(suspended).to_have_text("2 suspended")
            page.screenshot(path=str(OUTPUT / "e2e-admin-dashboard.png"), full_page=True)

            suspended.click()
            page.wait_for_url("**/admin/wallets/project/?status__exact=suspended")
            rows = page.locator("#result_list tbody tr")
            expect(rows).to_have_count(2)
            expect(page.locator("#result_list")).to_contain_text("late-payer")
            expect(page.locator("#result_list")).not_to_contain_text("still-active")
        finally:
            browser.close()
