"""Included at the site root: the Stripe webhook and the checkout-session API."""

from django.urls import path

from creditservice.lib.routes import api_path

from . import api, webhooks

urlpatterns = [
    path("stripe/webhook", webhooks.stripe_webhook, name="stripe-webhook"),
    api_path("api/v1/projects/<slug:slug>/checkout-sessions", api.CheckoutSessionListView.as_view(),
             name="checkout-session-list"),
    api_path("api/v1/projects/<slug:slug>/checkout-sessions/<str:session_id>", api.CheckoutSessionDetailView.as_view(),
             name="checkout-session-detail"),
]
