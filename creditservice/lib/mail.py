"""The email backend outside DEBUG when none is configured: nothing is sent and nothing of a message's
body reaches a log (a password-reset link in it is a working credential, superusers' included)."""

import logging

from django.core.mail.backends.base import BaseEmailBackend

log = logging.getLogger(__name__)


class UnsentEmailBackend(BaseEmailBackend):
    def send_messages(self, email_messages) -> int:
        messages = list(email_messages)
        if messages:
            # Subjects only: they are our templates' ("Reset your creditservice password"), never a token.
            subjects = ", ".join(repr(str(message.subject)[:80]) for message in messages[:5])
            log.error("EMAIL_BACKEND is not configured: %d message(s) not sent (%s)", len(messages), subjects)
        return 0
