"""The portal's monthly statement page: billing.statements renders it; the CSV is the API's own."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from billing.api_statements import statement_body, statement_csv
from billing.statements import month_of, project_first_month, project_statement, statement_month
from creditservice.lib.errors import ValidationFailed

from . import selectors


@login_required
@require_GET
def statement(request: HttpRequest, slug: str) -> HttpResponse:
    project = selectors.project_for_member(request.user, slug)
    current = month_of(timezone.now()).label
    value = request.GET.get("month") or current
    context = {"project": project, "month_value": value[:7], "current_month": current,
               "first_month": project_first_month(project).label}
    try:
        month = statement_month(value, project=project)
    except ValidationFailed as refused:
        context["error"] = "; ".join(refused.detail["month"])
        return render(request, "portal/statement.html", context, status=400)
    found = project_statement(project=project, month=month)
    if request.GET.get("format") == "csv":
        response = HttpResponse(statement_csv(statement_body(found)), content_type="text/csv; charset=utf-8")
        response["Content-Disposition"] = f'attachment; filename="statement-{project.slug}-{month.label}.csv"'
        return response
    return render(request, "portal/statement.html", {**context, "statement": found})
