from celery import shared_task

from . import retention


@shared_task(name="gateway.purge_charges")
def purge_charges() -> int:
    """Delete gateway charges older than GATEWAY_CHARGE_RETENTION (their transfers stay); hourly, and
    safe to run any number of times."""
    return retention.gateway_charges_purge()
