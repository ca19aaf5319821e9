from creditservice.lib.paths import register_db_id_converter
from creditservice.lib.routes import api_path

from . import api, api_grants

register_db_id_converter()  # an id too large for the column matches no route (404)

urlpatterns = [
    api_path("projects/", api.ProjectListView.as_view(), name="project-list"),
    api_path("projects/<slug:slug>/", api.ProjectDetailView.as_view(), name="project-detail"),
    api_path("projects/<slug:slug>/wallet", api.WalletView.as_view(), name="wallet"),
    api_path("projects/<slug:slug>/transactions", api.TransactionListView.as_view(), name="transactions"),
    api_path("projects/<slug:slug>/wallet/credit", api.WalletCreditView.as_view(), name="wallet-credit"),
    api_path("projects/<slug:slug>/wallet/debit", api.WalletDebitView.as_view(), name="wallet-debit"),
    api_path("projects/<slug:slug>/grants", api_grants.GrantListView.as_view(), name="grants"),
    api_path("grants/<db_id:grant_id>/void", api_grants.GrantVoidView.as_view(), name="grant-void"),
]
