"""The project page shows the balance by grant category and what expires within 30 days."""

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from creditservice.lib.money import credits_to_micros
from wallets import services

pytestmark = pytest.mark.django_db


def test_it_shows_credits_by_grant_category_and_what_expires_soon(browser, project):
    services.grant_create(project=project, category="promotional", amount=credits_to_micros("12.5"), reason="launch",
                          actor="system", idempotency_key="promo-1", expires_at=timezone.now() + timedelta(days=7))
    services.grant_create(project=project, category="promotional", amount=credits_to_micros("3"), reason="later",
                          actor="system", idempotency_key="promo-2", expires_at=timezone.now() + timedelta(days=90))
    html = browser.get("/portal/acme/").content.decode()
    assert re.search(r"<dt>Promotional</dt><dd>15.5<", html)
    assert re.search(r"<dt>Granted</dt><dd>100<", html)
    assert re.search(r'data-testid="expiring-soon">12.5<', html)
