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
        from wallets import ledger, lifecycle, serializers

        from .selectors import transactions_page_extension, wallet_burn_rate_extension
        from .services.alerts import alerts_after_wallet_change
        from .services.lifecycle import (
            project_enter_grace_if_taken_back,
            project_lift_suspension,
            project_reactivate_if_funded,
            project_suspend_by_staff,
        )

        ledger.on_wallet_funded(project_reactivate_if_funded)
        ledger.on_wallet_unfunded(project_enter_grace_if_taken_back)
        ledger.on_wallet_changed(alerts_after_wallet_change)
        lifecycle.register_staff_suspension(suspend=project_suspend_by_staff, lift=project_lift_suspension)
        serializers.wallet_body_extensions.append(wallet_burn_rate_extension)
        serializers.transactions_page_extensions.append(transactions_page_extension)
