from django.urls import path

from . import api

urlpatterns = [
    path("projects/<slug:slug>/charges", api.ChargeListView.as_view(), name="charges"),
]
