from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from wallets.api import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/v1/", include("wallets.urls")),
    path("api/v1/", include("quotas.urls")),
    path("api/v1/", include("metering.urls")),
    path("api/v1/", include("billing.urls")),
    path("", include("payments.urls")),
    path("portal/", include("portal.urls")),
    path("accounts/", include("django.contrib.auth.urls")),
]

handler404 = "creditservice.lib.views.not_found"
handler500 = "creditservice.lib.views.server_error"
