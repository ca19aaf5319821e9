"""Tenant portal pages. Thin: reads come from portal.selectors, the one write is payments' Checkout Session."""

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from creditservice.lib.errors import ApiError, ValidationFailed
from creditservice.lib.money import format_amount
from payments import autotopup
from payments.services import checkout_session_create
from payments.topup_card import checkout_session_create_saving_card
from wallets.models import Project

from . import selectors
from .charts import spend_chart
from .forms import TopUpForm, new_form_token
from .ratelimit import limit_writes_per_user

TRANSFERS_PER_PAGE = 20


@login_required
@require_GET
def index(request: HttpRequest) -> HttpResponse:
    cards = selectors.project_cards(list(selectors.member_projects(request.user)))
    return render(request, "portal/index.html", {"projects": cards})


def _render_project(request: HttpRequest, project: Project, *, status: int = 200,
                    topup_form: TopUpForm | None = None, topup_error: str = "") -> HttpResponse:
    page = Paginator(selectors.project_transfers(project), TRANSFERS_PER_PAGE).get_page(request.GET.get("page"))
    context = {
        "project": project,
        "wallet": selectors.wallet_of(project),
        "grants": selectors.wallet_grants(project),
        "burn": selectors.project_burn(project),
        "page": page,
        "rows": selectors.statement_rows(project, list(page.object_list)),
        "chart": spend_chart(selectors.daily_spend(project)),
        "quotas": selectors.project_quotas(project),
        "budget": selectors.budget_status(project),
        "limits": selectors.topup_limits(),
        # A fresh token for each form on each render; see forms.new_form_token.
        "preset_token": new_form_token(),
        "custom_token": new_form_token(),
        "topup_form": topup_form,
        "topup_error": topup_error,
        # Only owners are offered "save this card for automatic top-ups" (the view refuses anyone else).
        "owner": selectors.is_owner(request.user, project),
        "terms_version": autotopup.TERMS_VERSION,
        "terms_text": autotopup.TERMS_TEXT,
    }
    return render(request, "portal/project.html", context, status=status)


@login_required
@require_GET
def project_detail(request: HttpRequest, slug: str) -> HttpResponse:
    return _render_project(request, selectors.project_for_member(request.user, slug))


@login_required
@require_POST
@limit_writes_per_user
def topup(request: HttpRequest, slug: str) -> HttpResponse:
    project = selectors.project_for_member(request.user, slug)
    limits = selectors.topup_limits()
    if not limits.enabled:
        return _render_project(request, project, status=503,
                               topup_error="Card top-ups are not available: payments are not configured.")
    form = TopUpForm(request.POST, limits=limits)
    if not form.is_valid():
        return _render_project(request, project, status=400, topup_form=form)
    save_card = form.cleaned_data["save_card"]
    if save_card and not selectors.is_owner(request.user, project):
        raise PermissionDenied("only the project's owners save a card for automatic top-ups")
    amount = form.cleaned_data["amount"]
    success = request.build_absolute_uri(reverse("portal:topup-success", args=[project.slug]))
    cancel = request.build_absolute_uri(reverse("portal:topup-cancel", args=[project.slug]))
    request_args = {
        "project": project,
        "amount": amount,
        "actor": f"user:{request.user.pk}",
        # The amount is part of the key: the preset buttons of one form share its token. Saving the card
        # makes another top-up (one key, one set of Stripe parameters).
        "idempotency_key": f"v1:portal-topup:{project.pk}:{request.user.pk}:{form.cleaned_data['token']}:{amount}"
                           + (":save-card" if save_card else ""),
        # Stripe replaces {CHECKOUT_SESSION_ID} itself; it must reach Stripe unencoded.
        "success_url": success + "?session_id={CHECKOUT_SESSION_ID}",
        "cancel_url": cancel,
    }
    try:
        if save_card:
            session = checkout_session_create_saving_card(**request_args,
                                                          terms_version=form.cleaned_data["terms_version"])
        else:
            session = checkout_session_create(**request_args)
    except ValidationFailed as error:
        # Payments re-checks the amount (bounds, an exact amount of the currency) and the terms agreed to:
        # shown beside the field.
        form.add_error("save_card" if "save_card" in error.detail else "amount", _error_text(error))
        return _render_project(request, project, status=400, topup_form=form)
    except ApiError as error:
        return _render_project(request, project, status=error.status_code, topup_form=form,
                               topup_error=_error_text(error))
    response = HttpResponseRedirect(session.url)
    response.status_code = 303  # the browser follows with a GET to Checkout
    return response


def _error_text(error: ApiError) -> str:
    """An API refusal as one sentence for a person."""
    if error.code == "billing_disabled":
        return "Card top-ups are not available: payments are not configured."
    detail = error.detail
    if isinstance(detail, dict):
        detail = " ".join(str(message) for messages in detail.values()
                          for message in (messages if isinstance(messages, list) else [messages]))
    text = str(detail)
    return text[:1].upper() + text[1:]


@login_required
@require_GET
@never_cache
def topup_success(request: HttpRequest, slug: str) -> HttpResponse:
    project = selectors.project_for_member(request.user, slug)
    session_id = request.GET.get("session_id", "")
    session = selectors.checkout_session(project, session_id)
    return render(request, "portal/topup_success.html", {
        "project": project,
        "wallet": selectors.wallet_read_after(project),
        "session": session,
        "session_id": session_id,
        # Funded once the webhook's ledger transfer exists (a later refund does not undo that here).
        "funded": session is not None and session.funded,
    }, status=200 if session is not None else 404)


@login_required
@require_GET
@never_cache
def topup_status(request: HttpRequest, slug: str) -> JsonResponse:
    """What the success page polls: has the webhook funded the wallet yet?"""
    project = selectors.project_for_member(request.user, slug)
    session = selectors.checkout_session(project, request.GET.get("session_id", ""))
    if session is None:
        return JsonResponse({"error": "not_found", "detail": "no such checkout session"}, status=404)
    wallet = selectors.wallet_read_after(project)
    return JsonResponse({
        "status": session.status,
        "funded": session.funded,
        "amount": format_amount(session.amount),
        "balance": format_amount(wallet.balance),
        "available": format_amount(wallet.available),
    })


@login_required
@require_GET
def topup_cancel(request: HttpRequest, slug: str) -> HttpResponse:
    project = selectors.project_for_member(request.user, slug)
    return render(request, "portal/topup_cancel.html", {"project": project})
