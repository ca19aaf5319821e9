"""Celery tasks of payments: each loads by id and calls one service; the decisions live in the database."""

from celery import shared_task

from . import autotopup


@shared_task(name="payments.tasks.autotopup_charge_send")
def autotopup_charge_send_task(charge_id: int) -> str:
    """Call Stripe for one written auto top-up charge (after the commit that wrote it)."""
    return autotopup.autotopup_charge_send(charge_id=charge_id).status


@shared_task(name="payments.tasks.autotopup_sweep")
def autotopup_sweep() -> dict[str, int]:
    """Every minute (beat): retry charges Stripe did not answer, with back-off; re-check enabled projects."""
    return autotopup.autotopup_sweep()
