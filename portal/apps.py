import logging

from django.apps import AppConfig


class PortalConfig(AppConfig):
    name = "portal"
    verbose_name = "Tenant portal"

    def ready(self) -> None:
        from creditservice.lib.startup_checks import register_startup_check

        from .checks import email_configuration

        # Also logged, because a production server (gunicorn) does not run the system checks.
        register_startup_check(email_configuration, logging.getLogger(__name__))
