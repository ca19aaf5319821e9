import logging

from django.apps import AppConfig


class PaymentsConfig(AppConfig):
    name = "payments"
    verbose_name = "Payments (Stripe)"

    def ready(self) -> None:
        from creditservice.lib.startup_checks import register_startup_check
        from wallets import ledger

        from .autotopup import on_wallet_changed
        from .checks import stripe_configuration

        # Auto top-up looks at a project's balance after each change of its wallet (after the commit).
        ledger.on_wallet_changed(on_wallet_changed)

        # Also logged, because a production server (gunicorn) does not run the system checks.
        register_startup_check(stripe_configuration, logging.getLogger(__name__))
