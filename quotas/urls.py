from django.urls import path

from . import api

urlpatterns = [
    path("admission/check", api.AdmissionCheckView.as_view(), name="admission-check"),
    path("reservations", api.ReservationCreateView.as_view(), name="reservation-create"),
    path("reservations/<int:reservation_id>", api.ReservationDetailView.as_view(), name="reservation-detail"),
    path("reservations/<int:reservation_id>/commit", api.ReservationCommitView.as_view(), name="reservation-commit"),
    path("reservations/<int:reservation_id>/release", api.ReservationReleaseView.as_view(), name="reservation-release"),
    path("projects/<slug:slug>/reservations", api.ProjectReservationsView.as_view(), name="project-reservations"),
    path("projects/<slug:slug>/quotas", api.QuotaListView.as_view(), name="quota-list"),
    path("projects/<slug:slug>/quotas/<slug:resource_type>", api.QuotaDetailView.as_view(), name="quota-detail"),
    path("projects/<slug:slug>/quotas/<slug:resource_type>/release", api.QuotaReleaseView.as_view(), name="quota-release"),
    path("projects/<slug:slug>/budget", api.BudgetView.as_view(), name="budget"),
]
