"""Start-up checks of the sign-in pages: outside DEBUG, password-reset mail must go out and never to a log."""

from django.conf import settings
from django.core.checks import Error, Warning

# Backends that write every message, reset links included, to the console (the server log) or to disk.
LOGGING_BACKENDS = ("django.core.mail.backends.console.EmailBackend", "django.core.mail.backends.filebased.EmailBackend")
UNSENT_BACKEND = "creditservice.lib.mail.UnsentEmailBackend"


def email_configuration(app_configs, **kwargs) -> list[Warning | Error]:
    if settings.DEBUG:
        return []
    if settings.EMAIL_BACKEND in LOGGING_BACKENDS:
        return [Error(
            f"EMAIL_BACKEND is {settings.EMAIL_BACKEND} with DEBUG off: password-reset links, working "
            "credentials, would be written to the server log or to disk.",
            hint="Set EMAIL_BACKEND to a backend that sends mail (e.g. django.core.mail.backends.smtp.EmailBackend "
                 "with EMAIL_HOST), or leave it unset to send none.",
            id="portal.E001",
        )]
    if settings.EMAIL_BACKEND == UNSENT_BACKEND:
        return [Warning(
            "EMAIL_BACKEND is not set: no mail is sent, so nobody can reset a forgotten password.",
            hint="Set EMAIL_BACKEND (e.g. django.core.mail.backends.smtp.EmailBackend with EMAIL_HOST).",
            id="portal.W001",
        )]
    return []
