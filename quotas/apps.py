from django.apps import AppConfig


class QuotasConfig(AppConfig):
    name = "quotas"
    verbose_name = "Admission control"

    def ready(self) -> None:
        # Registers the holds invariant with wallets.selectors (`manage.py check_ledger` runs it).
        from . import selectors  # noqa: F401
