import logging

from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "payments"
    verbose_name = "Payments (Stripe)"

    def ready(self) -> None:
        from creditservice.lib.startup_checks import register_startup_check

        from .checks import stripe_configuration

        # Also logged, because a production server (gunicorn) does not run the system checks.
        register_startup_check(stripe_configuration, logging.getLogger(__name__))
