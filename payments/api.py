"""Top-ups for programs: POST/GET /api/v1/projects/{slug}/checkout-sessions. Thin views over the services."""

from django.conf import settings
from django.core.validators import URLValidator
from django.urls import NoReverseMatch, reverse
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from creditservice.lib.errors import NotFound
from creditservice.lib.fields import CreditsField, StrictSerializer
from creditservice.lib.money import format_amount, format_currency_minor
from creditservice.lib.schema import errors
from creditservice.lib.text import no_control_characters
from wallets import access, idempotency
from wallets.api import IDEMPOTENCY_PARAM, validated
from wallets.models import Project

from . import selectors, services
from .models import CheckoutSession

_WEB_URL = URLValidator(schemes=["http", "https"])


def _return_url_allowed(url: str) -> None:
    """After paying, Stripe sends the payer to this URL: only our own site, never a caller's choice of host."""
    if not services.return_url_allowed(url):
        raise serializers.ValidationError(
            f"must be on {' or '.join(services.return_origins())} (SITE_URL, or an origin listed in "
            "CHECKOUT_RETURN_ORIGINS)")


class CheckoutSessionCreateSerializer(StrictSerializer):
    amount = CreditsField(help_text="Credits to buy, a decimal string within the configured top-up bounds.")
    # Where Stripe sends the customer back; by default the project's portal page. Only SITE_URL's origin
    # or one of CHECKOUT_RETURN_ORIGINS (a 400 otherwise).
    success_url = serializers.URLField(max_length=1500, required=False,
                                       validators=[_WEB_URL, no_control_characters, _return_url_allowed])
    cancel_url = serializers.URLField(max_length=1500, required=False,
                                      validators=[_WEB_URL, no_control_characters, _return_url_allowed])


def _schema_fields() -> dict:
    return {
        "id": serializers.CharField(), "url": serializers.URLField(), "amount": serializers.CharField(),
        "currency": serializers.CharField(), "currency_amount": serializers.CharField(),
        "status": serializers.ChoiceField(choices=CheckoutSession.Status.choices),
        "funded": serializers.BooleanField(), "funded_at": serializers.DateTimeField(allow_null=True),
        "refunded_amount": serializers.CharField(), "created_at": serializers.DateTimeField(),
    }


CHECKOUT_SESSION_SCHEMA = inline_serializer("CheckoutSession", _schema_fields())


def checkout_session_body(session: CheckoutSession) -> dict:
    return {
        "id": session.stripe_session_id or str(session.id),
        "url": session.url,
        "amount": format_amount(session.amount),
        "currency": session.currency,
        "currency_amount": format_currency_minor(session.currency_amount, session.currency),
        "status": session.status,
        "funded": session.funded,
        "funded_at": session.funded_at.isoformat() if session.funded_at else None,
        "refunded_amount": format_amount(session.refunded_amount),
        "created_at": session.created_at.isoformat(),
    }


def default_return_url(project: Project, outcome: str) -> str:
    """The portal's top-up pages (by URL name, so this app imports nothing of the portal's)."""
    try:
        path = reverse(f"portal:topup-{outcome}", args=[project.slug])
    except NoReverseMatch:
        path = f"/portal/{project.slug}/"
    return f"{settings.SITE_URL.rstrip('/')}{path}"


class CheckoutSessionListView(APIView):
    @extend_schema(responses=inline_serializer("CheckoutSessionList", _schema_fields(), many=True))
    def get(self, request: Request, slug: str) -> Response:
        project = access.project_for_caller(request, slug)
        sessions = selectors.checkout_sessions_for_project(project)[:100]
        return Response([checkout_session_body(s) for s in sessions])

    @extend_schema(request=CheckoutSessionCreateSerializer, parameters=[IDEMPOTENCY_PARAM],
                   responses={201: CHECKOUT_SESSION_SCHEMA, **errors(409, 422, 429)})
    def post(self, request: Request, slug: str) -> Response:
        project = access.project_for_caller(request, slug)
        # Before validation: a client learns at once that no body will help.
        services.require_billing_enabled()
        data = validated(CheckoutSessionCreateSerializer, request.data)
        idempotency.require_key(request)
        actor = access.caller_actor(request)

        def operation(effect_key: str) -> tuple[int, dict]:
            session = services.checkout_session_create(
                project=project, amount=data["amount"], actor=actor, idempotency_key=effect_key,
                success_url=data.get("success_url") or default_return_url(project, "success"),
                cancel_url=data.get("cancel_url") or default_return_url(project, "cancel"),
            )
            return 201, checkout_session_body(session)

        # The Stripe call must not run inside a transaction: the service commits its write-ahead row
        # (keyed by effect_key, the same for every attempt of this Idempotency-Key) before it calls.
        return idempotency.run_outbound(request, request.data, operation)


class CheckoutSessionDetailView(APIView):
    @extend_schema(responses=CHECKOUT_SESSION_SCHEMA)
    def get(self, request: Request, slug: str, session_id: str) -> Response:
        project = access.project_for_caller(request, slug)
        session = selectors.checkout_session_for_project(project, session_id)
        if session is None:
            raise NotFound(f"no checkout session {session_id!r} in project {slug!r}")
        return Response(checkout_session_body(session))
