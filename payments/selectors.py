"""Reads of the payments app: configuration, limits and a project's top-ups."""

from dataclasses import dataclass

from django.conf import settings
from django.db.models import QuerySet

from creditservice.lib.money import credits_to_micros
from creditservice.lib.paths import database_id
from wallets.models import Project

from .models import AutoTopUp, CheckoutSession


def billing_enabled() -> bool:
    """Card top-ups need a Stripe secret key; without one everything else keeps working."""
    return bool(settings.STRIPE_SECRET_KEY)


@dataclass(frozen=True)
class TopUpBounds:
    minimum: int  # micro-credits
    maximum: int  # micro-credits


def topup_bounds() -> TopUpBounds:
    return TopUpBounds(
        minimum=credits_to_micros(settings.TOPUP_MIN_CREDITS), maximum=credits_to_micros(settings.TOPUP_MAX_CREDITS),
    )


def checkout_session_for_project(project: Project, session_id: str | int) -> CheckoutSession | None:
    """One of the project's top-ups, by Stripe's session id ("cs_…") or by our row id."""
    sessions = CheckoutSession.objects.filter(project=project).select_related("transfer")
    text = str(session_id)
    row_id = database_id(text)
    if row_id is not None:
        return sessions.filter(id=row_id).first()
    return sessions.filter(stripe_session_id=text).first()


def checkout_sessions_for_project(project: Project) -> QuerySet[CheckoutSession]:
    """The project's top-ups, newest first (index checkout_project_recent)."""
    return CheckoutSession.objects.filter(project=project).order_by("-id")


# A new project's auto top-up (off): below 10 credits, fill to 50, at most 500 a month; in micro-credits.
AUTOTOPUP_DEFAULTS = {"threshold": 10_000_000, "target": 50_000_000, "monthly_cap": 500_000_000}


def autotopup_settings_of(project: Project) -> AutoTopUp:
    """The project's auto top-up settings; unsaved defaults (off) when it has none yet."""
    return AutoTopUp.objects.filter(project=project).first() or AutoTopUp(project=project, **AUTOTOPUP_DEFAULTS)
