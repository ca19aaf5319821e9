import logging

from celery import shared_task

from . import idempotency, ledger, services
from .models import LedgerCheck

log = logging.getLogger(__name__)


@shared_task(name="wallets.purge_idempotency_keys")
def purge_idempotency_keys() -> int:
    """Forget Idempotency-Keys older than IDEMPOTENCY_KEY_TTL; safe to run any number of times."""
    return idempotency.purge_expired()


@shared_task(name="wallets.check_ledger")
def check_ledger() -> dict:
    """The nightly ledger check: stores its result (admin: Ledger checks) and logs an error naming the
    first drifts when it fails. A drift is a finding, not a failed task: it is not retried."""
    report, row = services.ledger_check_run(source=LedgerCheck.Source.NIGHTLY)
    if not report.ok:
        log.error("ledger check %s found %d drift(s), first: %s", row.id, len(report.drifts), "; ".join(report.drifts[:5]))
    return {"ledger_check": row.id, "ok": report.ok, "drifts": len(report.drifts)}


@shared_task(name="wallets.expire_grants")
def expire_grants() -> int:
    """Expire the unspent rest of grants past expires_at (each once; safe to run twice); every minute."""
    return ledger.grants_expire_due()
