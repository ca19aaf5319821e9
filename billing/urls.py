import quotas.urls  # noqa: F401  registers the db_id path converter
from creditservice.lib.routes import api_path

from . import alerts_api, api, api_statements

urlpatterns = [
    api_path("projects/<slug:slug>/charges", api.ChargeListView.as_view(), name="charges"),
    api_path("projects/<slug:slug>/statements/<str:month>", api_statements.StatementView.as_view(), name="statement"),
    api_path("projects/<slug:slug>/alerts", alerts_api.ProjectAlertsView.as_view(), name="project-alerts"),
    api_path("alerts/<db_id:alert_id>", alerts_api.AlertDetailView.as_view(), name="alert-detail"),
]
