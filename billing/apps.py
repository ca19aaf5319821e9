from django.apps import AppConfig

_hooks_registered = False


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing"

    def ready(self) -> None:
        # Hooks into the lower app's registries, so wallets never imports billing.
        global _hooks_registered
        if _hooks_registered:
            return
        _hooks_registered = True
        from wallets import ledger, serializers

        from .selectors import wallet_burn_rate_extension
        from .services.lifecycle import project_reactivate_if_funded

        ledger.on_wallet_funded(project_reactivate_if_funded)
        serializers.wallet_body_extensions.append(wallet_burn_rate_extension)
