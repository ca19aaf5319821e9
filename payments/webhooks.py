"""POST /stripe/webhook: Stripe's deliveries. A plain Django view: the raw body is what is signed."""

import logging

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from creditservice.lib.errors import json_error

from . import events

log = logging.getLogger(__name__)


@csrf_exempt
@require_POST
def stripe_webhook(request: HttpRequest) -> JsonResponse:
    if not settings.STRIPE_WEBHOOK_SECRET:
        # Unverifiable: refuse with a retriable status so Stripe redelivers once the secret is set.
        return json_error(503, "billing_disabled", "STRIPE_WEBHOOK_SECRET is not configured")
    try:
        event, created = events.stripe_webhook_handle(
            payload=request.body, signature=request.headers.get("Stripe-Signature"),
        )
    except events.InvalidEvent as exc:
        log.warning("Stripe webhook refused: %s", exc)
        return json_error(400, "invalid_signature", str(exc))
    except events.ProcessingFailed:
        # Stored as failed; a 5xx makes Stripe deliver it again, and the admin can reprocess it.
        return json_error(500, "processing_failed", "the event was stored and will be retried")
    return JsonResponse({"received": True, "id": event.stripe_event_id, "status": event.status,
                         "duplicate": not created})
