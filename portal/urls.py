from django.urls import path

from . import alerts_views, autotopup_views, statements_views, views

app_name = "portal"

urlpatterns = [
    path("", views.index, name="index"),
    path("<slug:slug>/", views.project_detail, name="project"),
    path("<slug:slug>/statements", statements_views.statement, name="statement"),
    path("<slug:slug>/topup", views.topup, name="topup"),
    path("<slug:slug>/topup/success", views.topup_success, name="topup-success"),
    path("<slug:slug>/topup/cancel", views.topup_cancel, name="topup-cancel"),
    path("<slug:slug>/topup/status", views.topup_status, name="topup-status"),
    path("<slug:slug>/auto-top-up", autotopup_views.autotopup_settings, name="autotopup"),
    path("<slug:slug>/auto-top-up/card", autotopup_views.autotopup_card, name="autotopup-card"),
    path("<slug:slug>/alerts", alerts_views.alerts_page, name="alerts"),
    path("<slug:slug>/alerts/<int:alert_id>/delete", alerts_views.alert_delete, name="alert-delete"),
]
