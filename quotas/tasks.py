"""Celery tasks of admission control. Scheduled by django-celery-beat (see migration 0004)."""

from celery import shared_task

from . import services


@shared_task(name="quotas.tasks.expire_reservations")
def expire_reservations() -> int:
    """Release the holds of pending reservations past expires_at; safe to run twice or concurrently."""
    return services.reservations_expire()
