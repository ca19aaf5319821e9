from django.urls import path

from creditservice.lib.routes import api_path

from . import api

# Under /gateway/: the gateway's subrequest, outside the versioned API (the gateway, not a client, calls it).
authorize_urlpatterns = [
    path("authorize", api.AuthorizeView.as_view(), name="gateway-authorize"),
    path("authorize/<path:subpath>", api.AuthorizeView.as_view(), name="gateway-authorize-path"),
]

# Under /api/v1/.
urlpatterns = [
    api_path("gateway/routes", api.RouteListView.as_view(), name="gateway-routes"),
]
