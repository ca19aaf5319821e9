from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from creditservice.lib.health import healthz, readyz
from creditservice.lib.metrics_exposition import metrics_view
from creditservice.lib.routes import api_catch_all, api_path
from creditservice.lib.views import home
from gateway.urls import authorize_urlpatterns as gateway_authorize_urls

urlpatterns = [
    path("", home, name="home"),
    # Probes: liveness (no I/O) and readiness (database, migrations, broker); see creditservice/lib/health.py.
    path("healthz", healthz, name="healthz"),
    # Prometheus scrapes: plain Django (no API key, not in the schema); METRICS_TOKEN guards it.
    path("metrics", metrics_view, name="metrics"),
    path("readyz", readyz, name="readyz"),
    path("admin/", admin.site.urls),
    api_path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    api_path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    # Admission's routes first: Django tries the routes in order on every request, and reserve and
    # commit are the hot calls (no two apps' routes match the same path, so the order changes nothing else).
    path("api/v1/", include("quotas.urls")),
    path("api/v1/", include("wallets.urls")),
    path("api/v1/", include("metering.urls")),
    path("api/v1/", include("billing.urls")),
    path("api/v1/", include("gateway.urls")),
    path("gateway/", include(gateway_authorize_urls)),
    path("", include("payments.urls")),
    path("portal/", include("portal.urls")),
    path("accounts/", include("django.contrib.auth.urls")),
    # Every API route answers with or without its trailing slash (api_path); any other /api/ path is a
    # JSON 404 in the error shape.
    api_catch_all,
]

handler404 = "creditservice.lib.views.not_found"
handler500 = "creditservice.lib.views.server_error"
