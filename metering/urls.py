from django.urls import path

from . import api

urlpatterns = [
    path("usage/events", api.UsageEventsView.as_view(), name="usage-events"),
]
