import logging

from django.apps import AppConfig
from django.conf import settings
from django.core import checks


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Tenant portal"

    def ready(self) -> None:
        from .checks import email_configuration

        checks.register(email_configuration)
        # Also logged, because a production server (gunicorn) does not run the system checks.
        if not settings.TESTING:
            for problem in email_configuration(None):
                logging.getLogger(__name__).log(problem.level, "%s (%s)", problem.msg, problem.id)
