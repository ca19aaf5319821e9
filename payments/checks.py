"""Start-up checks: card top-ups are optional, but their absence is said out loud."""

from django.conf import settings
from django.core.checks import Warning


def stripe_configuration(app_configs, **kwargs) -> list[Warning]:
    problems = []
    if not settings.STRIPE_SECRET_KEY:
        problems.append(Warning(
            "STRIPE_SECRET_KEY is not set: card top-ups are disabled (the API answers 503 billing_disabled).",
            hint="Set STRIPE_SECRET_KEY (and STRIPE_WEBHOOK_SECRET) to enable Stripe Checkout top-ups.",
            id="payments.W001",
        ))
    elif not settings.STRIPE_WEBHOOK_SECRET:
        problems.append(Warning(
            "STRIPE_SECRET_KEY is set but STRIPE_WEBHOOK_SECRET is not: paid top-ups will never be funded.",
            hint="Set STRIPE_WEBHOOK_SECRET to the endpoint's signing secret (whsec_...).",
            id="payments.W002",
        ))
    return problems
