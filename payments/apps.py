import logging

from django.apps import AppConfig
from django.conf import settings
from django.core import checks


class PaymentsConfig(AppConfig):
    name = "payments"
    verbose_name = "Payments (Stripe)"

    def ready(self) -> None:
        from .checks import stripe_configuration

        checks.register(stripe_configuration)
        # Also logged, because a production server (gunicorn) does not run the system checks.
        if not settings.TESTING:
            for warning in stripe_configuration(None):
                logging.getLogger(__name__).warning("%s (%s)", warning.msg, warning.id)
