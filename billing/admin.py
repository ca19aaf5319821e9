"""Staff screens for billing. Money is read-only; staff start runs, retry owed billing and redeliver
webhooks through actions and a form that call the services."""

from datetime import UTC

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from creditservice.lib.admin import CREDITS, QUANTITY, RATE, ReadOnlyAdmin
from creditservice.lib.enqueue import enqueue
from creditservice.lib.errors import ValidationFailed
from metering import windows
from quotas.models import ResourceType
from wallets import access
from wallets.models import Project

from . import statements
from .models import (
    AlertNotification,
    BillingChunk,
    BillingRun,
    Charge,
    OwedCharge,
    ProjectStatusChange,
    ThresholdAlert,
    WebhookDelivery,
    WebhookEndpoint,
)
from .services import billing_owed_retry, billing_run_execute, webhook_deliveries_redeliver
from .services.alerts import alert_body, alert_delete


class RunBillingForm(forms.Form):
    window_start = forms.DateTimeField(help_text="UTC start of a closed window, e.g. 2026-11-22 03:00")
    in_background = forms.BooleanField(required=False, initial=True,
                                       help_text="Hand the run to the Celery workers instead of waiting for it here.")

    def clean_window_start(self):
        value = self.cleaned_data["window_start"].astimezone(UTC)
        if not windows.is_window_start(value):
            raise forms.ValidationError("not the start of a billing window")
        if value + windows.window_length() > timezone.now():
            raise forms.ValidationError("that window has not closed yet")
        return value


def failures_table(failures: list[dict]) -> str:
    """A run's or an owed charge's failures ([{project_id, resource_type_id, window_start, reason}]) as a table
    of project, resource type and error, instead of their JSON."""
    if not failures:
        return "none"
    projects = Project.objects.in_bulk({failure.get("project_id") for failure in failures} - {None})
    types = ResourceType.objects.in_bulk({failure.get("resource_type_id") for failure in failures} - {None})

    def name(rows: dict, key, attribute: str) -> str:
        row = rows.get(key)
        return getattr(row, attribute) if row is not None else ("-" if key is None else f"#{key}")

    rows = format_html_join("", "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", (
        (name(projects, failure.get("project_id"), "slug"), name(types, failure.get("resource_type_id"), "code"),
         failure.get("window_start") or "-", failure.get("reason", "")) for failure in failures))
    return format_html("<table><thead><tr><th>project</th><th>resource type</th><th>window</th><th>error</th></tr>"
                       "</thead><tbody>{}</tbody></table>", rows)


class BillingChunkInline(admin.TabularInline):
    model = BillingChunk
    extra = 0
    can_delete = False
    fields = ["attempt", "index", "first_project_id", "last_project_id", "status", "charges_created", "projects_charged",
              "worker", "claimed_at", "finished_at", "error"]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(BillingRun)
class BillingRunAdmin(ReadOnlyAdmin):
    fixed_point_fields = {"credits_charged": CREDITS}
    list_display = ["window_start", "status", "attempt", "projects_charged", "charges_created", "credits_charged",
                    "failure_count", "owed_link", "duration", "trigger", "charges_link"]
    list_filter = ["status"]
    date_hierarchy = "window_start"
    inlines = [BillingChunkInline]
    actions = ["rerun_windows"]
    readonly_fields = ["charges_link", "owed_link", "failure_table"]
    exclude = ["failures"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[BillingRun]:
        # One query for the page's owed counts, not one per row.
        return super().get_queryset(request).annotate(
            owed_count=Count("owed_charges", filter=Q(owed_charges__status=OwedCharge.Status.OWED)))

    @admin.display(description="failures (last attempt)")
    def failure_table(self, obj: BillingRun) -> str:
        return failures_table(obj.failures)

    @admin.display(description="failures (last attempt)")
    def failure_count(self, obj: BillingRun) -> int:
        return len(obj.failures)

    @admin.display(description="still owed")
    def owed_link(self, obj: BillingRun) -> str:
        count = getattr(obj, "owed_count", None)
        if count is None:
            count = obj.owed_charges.filter(status=OwedCharge.Status.OWED).count()
        if not count:
            return "-"
        url = reverse("admin:billing_owedcharge_changelist") + f"?run__id__exact={obj.id}&status__exact=owed"
        return format_html('<a href="{}">{} owed</a>', url, count)

    @admin.display(description="duration (s)")
    def duration(self, obj: BillingRun) -> str:
        return f"{obj.duration_seconds:.2f}" if obj.duration_seconds is not None else "-"

    @admin.display(description="lines")
    def charges_link(self, obj: BillingRun) -> str:
        url = reverse("admin:billing_charge_changelist") + f"?run__id__exact={obj.id}"
        return format_html('<a href="{}">charges of this run</a>', url)

    def get_urls(self):
        return [path("run/", self.admin_site.admin_view(self.run_view), name="billing_billingrun_run"), *super().get_urls()]

    def has_run_permission(self, request: HttpRequest) -> bool:
        return access.may(request.user, access.BILLING_RUN)

    def changelist_view(self, request, extra_context=None):
        if self.has_run_permission(request):
            extra_context = {**(extra_context or {}), "run_billing_url": reverse("admin:billing_billingrun_run")}
        return super().changelist_view(request, extra_context)

    def _start(self, request: HttpRequest, window_start, in_background: bool) -> None:
        trigger = f"admin:{request.user.pk}"
        if in_background:
            from .tasks import billing_run_window

            if enqueue(billing_run_window, window_start.isoformat(), trigger):
                self.message_user(request, f"billing of {window_start.isoformat()} handed to the workers")
            else:
                self.message_user(request, f"the task broker is not answering: billing of {window_start.isoformat()} "
                                  "was not handed to the workers. The hourly billing beat bills every closed "
                                  "window; or run it here, not in the background.", messages.WARNING)
            return
        outcome = billing_run_execute(window_start=window_start, trigger=trigger)
        self.message_user(request, outcome.message, messages.SUCCESS if outcome.claimed else messages.WARNING)

    def run_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_run_permission(request):
            return HttpResponse("You may not start billing runs.", status=403)
        form = RunBillingForm(request.POST or None, initial={"window_start": windows.last_closed_window()[0]})
        if request.method == "POST" and form.is_valid():
            self._start(request, form.cleaned_data["window_start"], form.cleaned_data["in_background"])
            return HttpResponseRedirect(reverse("admin:billing_billingrun_changelist"))
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "form": form,
                   "title": "Run billing for a window"}
        return TemplateResponse(request, "admin/billing/run_billing.html", context)

    @admin.action(description="Run billing again for the selected windows (charges nothing twice)",
                  permissions=["run"])
    def rerun_windows(self, request: HttpRequest, queryset: QuerySet[BillingRun]):
        for run in queryset.order_by("window_start"):
            self._start(request, run.window_start, in_background=False)


class PastCapFilter(admin.SimpleListFilter):
    title = "retries"
    parameter_name = "past_cap"

    def lookups(self, request, model_admin):
        return [("yes", f"past the cap ({settings.BILLING_RETRY_ATTEMPTS_CAP} failed attempts)"),
                ("no", "within the cap")]

    def queryset(self, request, queryset):
        cap = settings.BILLING_RETRY_ATTEMPTS_CAP
        if self.value() == "yes":
            return queryset.filter(attempts__gte=cap)
        if self.value() == "no":
            return queryset.filter(attempts__lt=cap)
        return queryset


@admin.register(OwedCharge)
class OwedChargeAdmin(ReadOnlyAdmin):
    """What billing runs still owe (and what they owed): retried by the hourly beat with back-off."""

    fixed_point_fields = {"credits_charged": CREDITS}
    list_display = ["created_at", "window", "projects", "status", "attempts", "past_cap", "next_retry_at",
                    "last_attempt_at", "error", "charges_created"]
    readonly_fields = ["failure_table"]
    exclude = ["failures"]
    list_filter = ["status", PastCapFilter, "run__window_start"]
    search_fields = ["project__slug"]
    raw_id_fields = ["run", "project"]
    list_select_related = ["run", "project"]
    show_full_result_count = False
    actions = ["retry_now"]

    @admin.display(description="window", ordering="run__window_start")
    def window(self, obj: OwedCharge) -> str:
        return f"{obj.run.window_start:%Y-%m-%d %H:%M}"

    @admin.display(description="projects")
    def projects(self, obj: OwedCharge) -> str:
        if obj.project_id:
            return obj.project.slug
        return f"ids {obj.first_project_id}-{obj.last_project_id} (a chunk)"

    @admin.display(description="past the cap", boolean=True)
    def past_cap(self, obj: OwedCharge) -> bool:
        return obj.status == OwedCharge.Status.OWED and obj.attempts >= settings.BILLING_RETRY_ATTEMPTS_CAP

    @admin.display(description="last error")
    def error(self, obj: OwedCharge) -> str:
        return obj.last_error[:200]

    @admin.display(description="failures")
    def failure_table(self, obj: OwedCharge) -> str:
        return failures_table(obj.failures)

    def has_retry_permission(self, request: HttpRequest) -> bool:
        return access.may(request.user, access.OWED_RETRY)

    @admin.action(description="Retry the selected now (charges nothing twice)", permissions=["retry"])
    def retry_now(self, request: HttpRequest, queryset: QuerySet[OwedCharge]):
        rows = [billing_owed_retry(owed_id=owed_id, force=True)
                for owed_id in queryset.filter(status=OwedCharge.Status.OWED).values_list("id", flat=True)]
        retried = [row for row in rows if row is not None]
        owing = sum(1 for row in retried if row.status == OwedCharge.Status.OWED)
        self.message_user(request, f"{len(retried)} retried: {len(retried) - owing} charged, {owing} still owed",
                          messages.SUCCESS if not owing else messages.WARNING)


@admin.register(Charge)
class ChargeAdmin(ReadOnlyAdmin):
    fixed_point_fields = {"quantity": QUANTITY, "window_quantity": QUANTITY, "previously_charged_quantity": QUANTITY,
                          "rate": RATE, "amount": CREDITS}
    list_display = ["idempotency_key", "project", "resource_type", "window_start", "kind", "quantity", "unit",
                    "rate", "amount", "run"]
    list_filter = ["kind", "resource_type", "window_start"]
    search_fields = ["idempotency_key", "project__slug"]
    raw_id_fields = ["project", "resource_type", "price", "transfer", "run"]
    list_select_related = ["project", "resource_type", "run"]
    show_full_result_count = False

    def get_urls(self):
        return [path("statement/<int:project_id>/", self.admin_site.admin_view(self.statement_view),
                     name="billing_project_statement"), *super().get_urls()]

    def statement_view(self, request: HttpRequest, project_id: int) -> HttpResponse:
        """A project's monthly statement, as the API and the portal render it (billing/statements.py).
        Staff who may see every project (wallets.view_project) may read it, as through the API."""
        if not access.may(request.user, access.SEE_ALL_PROJECTS):
            raise PermissionDenied
        project = get_object_or_404(Project, pk=project_id)
        context = {**self.admin_site.each_context(request), "project": project, "title": f"Statement of {project.slug}",
                   "month_value": request.GET.get("month") or statements.month_of(timezone.now()).label}
        try:
            month = statements.statement_month(context["month_value"], project=project)
        except ValidationFailed as refused:
            context["error"] = "; ".join(refused.detail["month"])
            return TemplateResponse(request, "admin/billing/statement.html", context, status=400)
        context["statement"] = statements.project_statement(project=project, month=month)
        return TemplateResponse(request, "admin/billing/statement.html", context)


@admin.register(ProjectStatusChange)
class ProjectStatusChangeAdmin(ReadOnlyAdmin):
    list_display = ["at", "project", "from_status", "to_status", "reason", "grace_until"]
    list_filter = ["to_status"]
    search_fields = ["project__slug"]
    raw_id_fields = ["project"]
    list_select_related = ["project"]
    show_full_result_count = False


class WebhookEndpointForm(forms.ModelForm):
    # A receiver's URL typed without a scheme is taken as https (Django 6's default, said now).
    url = forms.URLField(max_length=WebhookEndpoint._meta.get_field("url").max_length, assume_scheme="https")
    # Ticked from the events we send, not typed as JSON: a typo would be an event that never comes.
    event_types = forms.TypedMultipleChoiceField(
        choices=WebhookEndpoint.Event.choices, required=False, widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every event, including ones added later.")

    class Meta:
        model = WebhookEndpoint
        fields = ["url", "project", "enabled", "event_types", "description"]

    def clean_event_types(self) -> list[str]:
        # Stored in the order of the choices, so the same selection is always the same JSON.
        chosen = set(self.cleaned_data["event_types"])
        return [value for value, _ in WebhookEndpoint.Event.choices if value in chosen]


@admin.register(WebhookEndpoint)
class WebhookEndpointAdmin(admin.ModelAdmin):
    """The signing secret is made with the endpoint and shown on the page that answers its creation; it is
    never typed in a form. Later only staff who may change endpoints read it (to set up a receiver): a
    view-only user sees it masked, since the secret lets anyone forge our deliveries."""

    form = WebhookEndpointForm
    list_display = ["url", "project", "enabled", "events", "created_at"]
    list_filter = ["enabled"]
    list_select_related = ["project"]
    raw_id_fields = ["project"]
    fields = ["url", "project", "enabled", "event_types", "description"]
    readonly_fields = ["secret", "masked_secret"]

    def has_secret_permission(self, request: HttpRequest) -> bool:
        return access.may(request.user, access.WEBHOOK_SECRET_READ)

    def get_fields(self, request: HttpRequest, obj=None) -> list[str]:
        if obj is None:
            return list(self.fields)
        return [*self.fields, "secret" if self.has_secret_permission(request) else "masked_secret"]

    @admin.display(description="event types")
    def events(self, obj: WebhookEndpoint) -> str:
        return ", ".join(obj.event_types) or "every event"

    @admin.display(description="signing secret")
    def masked_secret(self, obj: WebhookEndpoint) -> str:
        return "•••••••• (hidden: reading it needs the billing.change_webhookendpoint permission)"

    def response_add(self, request: HttpRequest, obj: WebhookEndpoint, post_url_continue=None) -> HttpResponse:
        """The answer to the creation shows the new secret once, whoever made it."""
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "endpoint": obj,
                   "title": f"Webhook endpoint {obj.url} created"}
        # Not cached by anyone: the admin marks its pages never_cache (Cache-Control: no-store).
        return TemplateResponse(request, "admin/billing/webhook_endpoint_created.html", context)


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "event_type", "project", "endpoint", "status", "attempts", "response_code",
                    "next_attempt_at", "last_error"]
    list_filter = ["status", "event_type"]
    # The endpoint's own project names it in the endpoint column.
    list_select_related = ["endpoint__project"]
    raw_id_fields = ["endpoint"]
    actions = ["redeliver"]
    show_full_result_count = False

    @admin.display(description="project")
    def project(self, obj: WebhookDelivery) -> str:
        """The project the event is about (a platform endpoint gets every project's events)."""
        return (obj.payload.get("data") or {}).get("project") or "-"

    def has_redeliver_permission(self, request: HttpRequest) -> bool:
        return access.may(request.user, access.WEBHOOK_REDELIVER)

    @admin.action(description="Redeliver the selected events now", permissions=["redeliver"])
    def redeliver(self, request: HttpRequest, queryset: QuerySet[WebhookDelivery]):
        count = webhook_deliveries_redeliver(delivery_ids=queryset.values_list("id", flat=True))
        self.message_user(request, f"{count} deliveries queued again")


@admin.register(ThresholdAlert)
class ThresholdAlertAdmin(ReadOnlyAdmin):
    """Projects' threshold alerts with their state. Seen with billing.view_thresholdalert; removed (the
    project's owners are no longer told) with billing.delete_thresholdalert. Owners add them in the portal,
    platforms through the API: staff do not add or change them here."""

    list_display = ["project", "metric", "level", "shown_threshold", "state", "shown_last_value", "changed_at"]
    list_filter = ["state", "metric", "level"]
    list_select_related = ["project"]
    search_fields = ["project__slug"]
    raw_id_fields = ["project"]
    show_full_result_count = False

    @admin.display(description="threshold")
    def shown_threshold(self, obj: ThresholdAlert) -> str:
        body = alert_body(obj, obj.project.slug)
        return f"{body['threshold']} {body['unit']}"

    @admin.display(description="last value")
    def shown_last_value(self, obj: ThresholdAlert) -> str:
        body = alert_body(obj, obj.project.slug)
        return f"{body['last_value']} {body['unit']}" if body["last_value"] is not None else "-"

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return access.may(request.user, access.ALERT_DELETE)

    def get_deleted_objects(self, objs, request: HttpRequest):
        # An alert's notifications (read-only history) go with it: deleting it needs no permission on them.
        deleted, counts, _, protected = super().get_deleted_objects(objs, request)
        return deleted, counts, set(), protected

    def delete_model(self, request: HttpRequest, obj: ThresholdAlert) -> None:
        alert_delete(alert=obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ThresholdAlert]) -> None:
        for alert in queryset:
            alert_delete(alert=alert)


@admin.register(AlertNotification)
class AlertNotificationAdmin(ReadOnlyAdmin):
    """Each crossing and recovery that was notified, and whether its email went out (billing.view_alertnotification)."""

    list_display = ["created_at", "alert", "change", "emailed_at", "email_attempts"]
    list_filter = ["change"]
    list_select_related = ["alert"]
    raw_id_fields = ["alert"]
    show_full_result_count = False
