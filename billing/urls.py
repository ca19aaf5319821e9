from creditservice.lib.routes import api_path

from . import api, api_statements

urlpatterns = [
    api_path("projects/<slug:slug>/charges", api.ChargeListView.as_view(), name="charges"),
    api_path("projects/<slug:slug>/statements/<str:month>", api_statements.StatementView.as_view(), name="statement"),
]
