from creditservice.lib.paths import register_db_id_converter
from creditservice.lib.routes import api_path

from . import api

# An id too large for the column matches no route (404) rather than reaching the database.
register_db_id_converter()

urlpatterns = [
    api_path("admission/check", api.AdmissionCheckView.as_view(), name="admission-check"),
    api_path("reservations", api.reservation_create_view, name="reservation-create"),
    api_path("reservations/<db_id:reservation_id>", api.ReservationDetailView.as_view(), name="reservation-detail"),
    api_path("reservations/<db_id:reservation_id>/commit", api.reservation_commit_view, name="reservation-commit"),
    api_path("reservations/<db_id:reservation_id>/release", api.ReservationReleaseView.as_view(), name="reservation-release"),
    api_path("projects/<slug:slug>/reservations", api.ProjectReservationsView.as_view(), name="project-reservations"),
    api_path("projects/<slug:slug>/quotas", api.QuotaListView.as_view(), name="quota-list"),
    api_path("projects/<slug:slug>/quotas/<slug:resource_type>", api.QuotaDetailView.as_view(), name="quota-detail"),
    api_path("projects/<slug:slug>/quotas/<slug:resource_type>/release", api.QuotaReleaseView.as_view(), name="quota-release"),
    api_path("projects/<slug:slug>/budget", api.BudgetView.as_view(), name="budget"),
]
