from creditservice.lib.routes import api_path

from . import api

urlpatterns = [
    api_path("usage/events", api.UsageEventsView.as_view(), name="usage-events"),
]
