"""The tenant's auto top-up page: settings, consent and "save a card". Thin: payments.autotopup decides.

Any member sees the page; only the project's owners change it (403 otherwise): it charges their card.
"""

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from creditservice.lib.errors import ApiError, ValidationFailed
from creditservice.lib.money import MoneyError, format_amount, parse_amount
from payments import autotopup
from payments import selectors as payment_selectors
from payments.models import AutoTopUpCharge
from wallets.models import Project

from . import selectors
from .forms import new_form_token
from .ratelimit import limit_writes_per_user

RECENT_CHARGES = 10


class CreditsField(forms.CharField):
    """Credits typed as a decimal ("25"), micro-credits once cleaned."""

    def __init__(self, *, allow_zero: bool = False, **kwargs):
        self.allow_zero = allow_zero
        super().__init__(max_length=40, **kwargs)

    def clean(self, value):
        text = super().clean(value)  # the length bound applies to the text as typed
        try:
            return parse_amount(text, allow_zero=self.allow_zero)
        except MoneyError as error:
            raise forms.ValidationError(f"Enter an amount in credits, for example 25: it {error}.")


class AutoTopUpForm(forms.Form):
    enabled = forms.BooleanField(required=False, label="Auto top-up on")
    threshold = CreditsField(allow_zero=True, label="When available falls below (credits)")
    target = CreditsField(label="Top up to (credits)")
    monthly_cap = CreditsField(label="At most per calendar month (credits)")
    consent = forms.BooleanField(required=False, label="I agree to these terms")


def _render(request: HttpRequest, project: Project, form: AutoTopUpForm | None = None, *, status: int = 200,
            error: str = "") -> HttpResponse:
    row = payment_selectors.autotopup_settings_of(project)
    form = form or AutoTopUpForm(initial={
        "enabled": row.enabled, "threshold": format_amount(row.threshold), "target": format_amount(row.target),
        "monthly_cap": format_amount(row.monthly_cap),
    })
    return render(request, "portal/autotopup.html", {
        "project": project, "row": row, "form": form, "error": error, "owner": selectors.is_owner(request.user, project),
        "terms_version": autotopup.TERMS_VERSION, "terms_text": autotopup.TERMS_TEXT,
        "consent_current": row.consent_at is not None and row.consent_terms_version == autotopup.TERMS_VERSION,
        "charges": AutoTopUpCharge.objects.filter(project=project).order_by("-id")[:RECENT_CHARGES],
        "limits": selectors.topup_limits(), "card_token": new_form_token(),
    }, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def autotopup_settings(request: HttpRequest, slug: str) -> HttpResponse:
    if request.method == "GET":
        return _render(request, selectors.project_for_member(request.user, slug))
    return _save(request, slug)


@limit_writes_per_user
def _save(request: HttpRequest, slug: str) -> HttpResponse:
    project = selectors.project_for_member(request.user, slug)
    if not selectors.is_owner(request.user, project):
        raise PermissionDenied("only the project's owners change auto top-up")
    form = AutoTopUpForm(request.POST)
    if not form.is_valid():
        return _render(request, project, form, status=400)
    data = form.cleaned_data
    try:
        autotopup.autotopup_update(project=project, actor=f"user:{request.user.pk}", enabled=data["enabled"],
                                   threshold=data["threshold"], target=data["target"],
                                   monthly_cap=data["monthly_cap"], consent=data["consent"])
    except ValidationFailed as refused:
        for field, messages in refused.detail.items():
            for message in messages:
                form.add_error(field if field in form.fields else None, message[:1].upper() + message[1:] + ".")
        return _render(request, project, form, status=400)
    return HttpResponseRedirect(reverse("portal:autotopup", args=[project.slug]), status=303)


@login_required
@require_POST
@limit_writes_per_user
def autotopup_card(request: HttpRequest, slug: str) -> HttpResponse:
    """"Save a card": to Stripe Checkout in setup mode; back to this page, where the card shows once saved."""
    project = selectors.project_for_member(request.user, slug)
    if not selectors.is_owner(request.user, project):
        raise PermissionDenied("only the project's owners save a card")
    token = request.POST.get("token", "")
    if not (16 <= len(token) <= 64 and token.replace("-", "").replace("_", "").isalnum()):
        return _render(request, project, status=400, error="The form expired. Please try again.")
    back = request.build_absolute_uri(reverse("portal:autotopup", args=[project.slug]))
    try:
        url = autotopup.autotopup_card_setup_start(project=project, success_url=back + "?card=saved",
                                                   cancel_url=back, token=f"{request.user.pk}:{token}")
    except ApiError as error:
        return _render(request, project, status=error.status_code, error=str(error.detail))
    return HttpResponseRedirect(url, status=303)
