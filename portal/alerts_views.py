"""The portal's alerts page: a project's threshold alerts; its owners add and remove them."""

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from billing.models import ThresholdAlert
from billing.services import alerts
from creditservice.lib.errors import ApiError
from wallets.models import Project

from . import selectors
from .ratelimit import limit_writes_per_user


class AlertForm(forms.Form):
    metric = forms.ChoiceField(choices=ThresholdAlert.Metric.choices)
    level = forms.ChoiceField(choices=ThresholdAlert.Level.choices, initial=ThresholdAlert.Level.WARNING)
    threshold = forms.CharField(max_length=40, help_text=(
        "Available balance: credits. Runway: whole hours. Budget: whole percent of the monthly budget."))


def _page(request: HttpRequest, project: Project, form: AlertForm, *, error: str = "", status: int = 200) -> HttpResponse:
    rows = [alerts.alert_body(alert, project.slug)
            for alert in ThresholdAlert.objects.filter(project=project)[:alerts.MAX_ALERTS_PER_PROJECT]]
    return render(request, "portal/alerts.html", {
        "project": project, "alerts": rows, "form": form, "error": error, "is_owner": selectors.is_owner(request.user, project),
        "max_alerts": alerts.MAX_ALERTS_PER_PROJECT,
    }, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def alerts_page(request: HttpRequest, slug: str) -> HttpResponse:
    """GET: the alerts (every member). POST: add one (owners only)."""
    if request.method == "POST":
        return _alert_add(request, slug)
    return _page(request, selectors.project_for_member(request.user, slug), AlertForm())


@limit_writes_per_user
def _alert_add(request: HttpRequest, slug: str) -> HttpResponse:
    project = selectors.project_for_member(request.user, slug)
    if not selectors.is_owner(request.user, project):
        raise PermissionDenied("only the project's owners manage its alerts")
    form = AlertForm(request.POST)
    if not form.is_valid():
        return _page(request, project, form, status=400)
    data = form.cleaned_data
    try:
        threshold = alerts.alert_threshold_parse(metric=data["metric"], text=data["threshold"].strip())
        alerts.alert_create(project=project, metric=data["metric"], level=data["level"], threshold=threshold)
    except ApiError as exc:
        detail = exc.detail.get("threshold", [exc.detail])[0] if isinstance(exc.detail, dict) else exc.detail
        return _page(request, project, form, error=str(detail), status=exc.status_code)
    return HttpResponseRedirect(reverse("portal:alerts", args=[project.slug]), status=303)


@login_required
@require_POST
@limit_writes_per_user
def alert_delete(request: HttpRequest, slug: str, alert_id: int) -> HttpResponse:
    project = selectors.project_for_member(request.user, slug)
    alert = ThresholdAlert.objects.filter(id=alert_id, project=project).first()
    if alert is None:
        raise Http404(f"no alert {alert_id}")
    if not selectors.is_owner(request.user, project):
        raise PermissionDenied("only the project's owners manage its alerts")
    alerts.alert_delete(alert=alert)
    return HttpResponseRedirect(reverse("portal:alerts", args=[project.slug]), status=303)
