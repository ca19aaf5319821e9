from django.apps import AppConfig
from django.db.models.signals import post_migrate


class GatewayConfig(AppConfig):
    default_auto_field = "django.db.models.BigAutoField"
    name = "gateway"
    verbose_name = "Gateway admission"

    def ready(self) -> None:
        from . import fastpath

        # The charge function is built from the ledger's and quotas' code: every migrate (re)creates it.
        post_migrate.connect(fastpath.install_after_migrate, sender=self, dispatch_uid="gateway_charge_function")
