from creditservice.lib.routes import api_path

from . import api

urlpatterns = [
    api_path("projects/<slug:slug>/charges", api.ChargeListView.as_view(), name="charges"),
]
