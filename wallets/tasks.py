from celery import shared_task

from . import idempotency


@shared_task(name="wallets.purge_idempotency_keys")
def purge_idempotency_keys() -> int:
    """Forget Idempotency-Keys older than IDEMPOTENCY_KEY_TTL; safe to run any number of times."""
    return idempotency.purge_expired()

