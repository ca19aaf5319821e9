"""The API docs work on a closed network: in a real browser (Debian's Chromium, driven by Playwright) /api/docs/
shows the operations, with Swagger UI's files served by us (drf-spectacular-sidecar), not a CDN, and no
request leaving 127.0.0.1."""

import os
from urllib.parse import urlsplit

import pytest
from django.core.management import call_command
from django.test import Client

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]

# Playwright's sync API runs an event loop in this thread; our ORM calls here happen outside it.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def test_with_debug_off_the_docs_assets_are_served_once_collected(db, settings, tmp_path):
    # As `make run` and `make serve` do: collectstatic, then WhiteNoise serves STATIC_ROOT.
    settings.DEBUG = False
    settings.STATIC_ROOT = tmp_path
    settings.WHITENOISE_AUTOREFRESH = False
    settings.WHITENOISE_USE_FINDERS = False
    page = Client().get("/api/docs/").content.decode()
    bundle = "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"
    assert bundle in page
    assert "cdn.jsdelivr.net" not in page and "@latest" not in page

    call_command("collectstatic", "--noinput", verbosity=0)
    response = Client().get(bundle)
    assert response.status_code == 200
    assert b"".join(response.streaming_content)


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_docs_show_the_operations_with_nothing_fetched_from_outside(live_server):
    from playwright.sync_api import expect, sync_playwright

    aborted: list[str] = []
    loaded: list[str] = []

    def only_local(route) -> None:
        url = route.request.url
        if urlsplit(url).hostname in ("127.0.0.1", "localhost"):
            loaded.append(url)
            route.continue_()
        else:
            aborted.append(url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.route("**/*", only_local)
            page.goto(f"{live_server.url}/api/docs/")
            reserve = page.locator(".opblock-post", has=page.locator(".opblock-summary-path",
                                                                     has_text="/api/v1/reservations"))
            expect(reserve.first).to_be_visible(timeout=20_000)
            expect(page.locator(".opblock-summary-path", has_text="/api/v1/projects/{slug}/wallet").first).to_be_visible()
        finally:
            browser.close()

    assert aborted == []
    assert any("/static/drf_spectacular_sidecar/" in url for url in loaded)
    assert any("/api/schema/" in url for url in loaded)
