from django.apps import AppConfig
from django.db.models.signals import post_migrate


class WalletsConfig(AppConfig):
    name = "wallets"
    verbose_name = "Wallets and ledger"

    def ready(self) -> None:
        from .ledger import functions

        # The ledger's PostgreSQL functions are built from its code: every migrate (re)creates them.
        post_migrate.connect(functions.install_after_migrate, sender=self, dispatch_uid="wallets_ledger_functions")
