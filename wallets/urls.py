from django.urls import path

from . import api

urlpatterns = [
    path("projects/", api.ProjectListView.as_view(), name="project-list"),
    path("projects/<slug:slug>/", api.ProjectDetailView.as_view(), name="project-detail"),
    path("projects/<slug:slug>/wallet", api.WalletView.as_view(), name="wallet"),
    path("projects/<slug:slug>/transactions", api.TransactionListView.as_view(), name="transactions"),
    path("projects/<slug:slug>/wallet/credit", api.WalletCreditView.as_view(), name="wallet-credit"),
    path("projects/<slug:slug>/wallet/debit", api.WalletDebitView.as_view(), name="wallet-debit"),
]
