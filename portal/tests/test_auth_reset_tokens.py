"""A password-reset link is a working credential (a superuser's too): no token ever reaches a log or the
console, whether email is configured or not."""

import logging

import pytest
from django.contrib.auth.tokens import PasswordResetTokenGenerator
from django.core import mail

from wallets.tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def tokens(monkeypatch) -> list[str]:
    """Every reset token made while the test runs (the one the mail carries among them)."""
    made: list[str] = []
    make = PasswordResetTokenGenerator.make_token

    def recording(self, user):
        token = make(self, user)
        made.append(token)
        return token

    monkeypatch.setattr(PasswordResetTokenGenerator, "make_token", recording)
    return made


def _everything_written(caplog, capsys) -> str:
    captured = capsys.readouterr()
    return "\n".join([caplog.text, *(record.getMessage() for record in caplog.records), captured.out, captured.err])


def test_without_an_email_backend_a_reset_sends_nothing_and_logs_no_token(client, settings, caplog, capsys, tokens):
    settings.EMAIL_BACKEND = "creditservice.lib.mail.UnsentEmailBackend"
    UserFactory(username="root", email="root@example.com", is_staff=True, is_superuser=True)
    caplog.set_level(logging.DEBUG)
    response = client.post("/accounts/password_reset/", {"email": "root@example.com"})
    assert response.status_code == 302  # the same answer as for an unknown address
    assert tokens, "the reset form made a token"
    written = _everything_written(caplog, capsys)
    assert "EMAIL_BACKEND is not configured: 1 message(s) not sent" in written
    assert not any(token in written for token in tokens)
    assert "/accounts/reset/" not in written


def test_with_email_configured_the_whole_reset_logs_no_token(client, caplog, capsys, tokens):
    UserFactory(username="root", email="root@example.com", is_staff=True, is_superuser=True)
    caplog.set_level(logging.DEBUG)
    client.post("/accounts/password_reset/", {"email": "root@example.com"})
    [message] = mail.outbox
    link = next(line for line in message.body.splitlines() if "/accounts/reset/" in line).strip()
    page = client.get(link.removeprefix("http://testserver"), follow=True)
    client.post(page.redirect_chain[-1][0], {"new_password1": "a-new-long-pass-42",
                                             "new_password2": "a-new-long-pass-42"})
    assert tokens and any(token in message.body for token in tokens)
    written = _everything_written(caplog, capsys)
    assert not any(token in written for token in tokens)
