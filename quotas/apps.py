from django.apps import AppConfig
from django.db.models.signals import post_migrate


class QuotasConfig(AppConfig):
    name = "quotas"
    verbose_name = "Admission control"

    def ready(self) -> None:
        from wallets.services import register_overdue_hold_release

        # Registers the holds invariant with wallets.selectors (`manage.py check_ledger` runs it).
        from . import selectors  # noqa: F401
        from .services import reservations_expire

        # A debit refused only because of holds past their expiry releases them and is tried again.
        register_overdue_hold_release(lambda project_id: reservations_expire(project_id=project_id))

        # Reserve and commit in one round trip on PostgreSQL (services/functions.py).
        from .services import functions

        post_migrate.connect(functions.install_after_migrate, sender=self, dispatch_uid="quotas_admission_functions")
