"""The admin site: Django's, with a staff dashboard on its home page (portal/staff_dashboard.py reads it).

Installed as the default site by portal.admin_apps.StaffAdminConfig, so every app's
admin.site.register() lands here unchanged.
"""

from django.contrib import admin
from django.db.models import Model
from django.http import HttpRequest, HttpResponse

from .charts import spend_chart
from .staff_dashboard import staff_dashboard


class StaffAdminSite(admin.AdminSite):
    index_template = "admin/staff_dashboard.html"

    def can_view(self, request: HttpRequest, model: type[Model]) -> bool:
        """What the admin itself decides: the model is registered and its admin lets the user view it."""
        model_admin = self._registry.get(model)
        return model_admin is not None and model_admin.has_view_permission(request)

    def index(self, request: HttpRequest, extra_context: dict | None = None) -> HttpResponse:
        dashboard = staff_dashboard(can_view=lambda model: self.can_view(request, model))
        chart = spend_chart(dashboard.credits_charged, verb="charged") if dashboard.credits_charged else None
        return super().index(request, extra_context={"dashboard": dashboard, "chart": chart, **(extra_context or {})})
