"""Who may see which project, and who may do what. Every project lookup and every permission check of
the API goes through here, and the admin's actions and staff views ask the same question (`may`).

A project the caller may not see is answered 404, never 403, so its existence is not revealed. An
operation the caller may not perform on a project it sees is a 403 forbidden.

Who may do what:
- A platform API key (no project): every operation below, on every project.
- A project-scoped API key: its own project only, and only the operations marked `project_keys`
  (reserve, commit, release, report usage); the others are refused (403). Gateway admission
  (GET /gateway/authorize) takes a project key only: it charges the key's own project.
- A staff user: the operations whose Django model permissions the user holds, the same permissions
  the admin checks (a superuser holds them all). `is_staff` alone grants nothing: a view-only staff
  account reads (with wallets.view_project it sees every project) and changes nothing.
- Any other user (a tenant signed in to the portal): reads its own projects; no operation below.
"""

from dataclasses import dataclass

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet
from rest_framework.request import Request

from creditservice.lib import log_context
from creditservice.lib.errors import Forbidden, NotFound

from .auth import ServicePrincipal
from .models import Project


@dataclass(frozen=True)
class Operation:
    """Something a caller does. `permissions`: what a staff user needs (all of them);
    `project_keys`: whether a project-scoped key may do it on its own project."""

    description: str
    permissions: tuple[str, ...]
    project_keys: bool = False


# Reads: a staff user sees every project (not only the ones it is a member of) with this permission.
SEE_ALL_PROJECTS = Operation("see every project", ("wallets.view_project",))

# The service API's writes.
PROJECT_CREATE = Operation("create a project", ("wallets.add_project",))
# The admin's credit / debit form asks for the same permission (one right to move credits).
CREDITS_MOVE = Operation("credit or debit a wallet", ("wallets.add_transfer",))
QUOTA_SET = Operation("set a quota limit", ("quotas.change_quota",))
QUOTA_RELEASE = Operation("release quota usage", ("quotas.change_quota",))
BUDGET_SET = Operation("set or remove a budget", ("quotas.change_budget",))
RESERVATION_CREATE = Operation("reserve credits and quota", ("quotas.add_reservation",), project_keys=True)
RESERVATION_SETTLE = Operation("commit or release a reservation", ("quotas.change_reservation",), project_keys=True)
USAGE_REPORT = Operation("report usage", ("metering.add_usageevent",), project_keys=True)
GATEWAY_ROUTES_READ = Operation("list metered gateway routes", ("gateway.view_meteredroute",))
GATEWAY_ROUTE_CREATE = Operation("add a metered gateway route", ("gateway.add_meteredroute",))
ALERT_CREATE = Operation("add a threshold alert", ("billing.add_thresholdalert",))
ALERT_DELETE = Operation("remove a threshold alert", ("billing.delete_thresholdalert",))
GRANT_CREATE = Operation("create a credit grant", ("wallets.add_grant",))
GRANT_VOID = Operation("void a credit grant", ("wallets.void_grant",))

# Staff operations of the admin (actions and custom views); no API key ever reaches them.
PROJECT_SUSPEND = Operation("suspend a project or lift its suspension", ("wallets.suspend_project",))
TRANSFERS_EXPORT = Operation("export transfers", ("wallets.view_transfer",))
API_KEY_REVOKE = Operation("revoke API keys", ("wallets.change_apikey",))
BILLING_RUN = Operation("start a billing run", ("billing.add_billingrun",))
OWED_RETRY = Operation("retry owed billing now", ("billing.retry_owedcharge",))
WEBHOOK_REDELIVER = Operation("redeliver webhooks", ("billing.change_webhookdelivery",))
WEBHOOK_SECRET_READ = Operation("read a webhook signing secret", ("billing.change_webhookendpoint",))
COLLECTION_RETRY = Operation("retry usage collection windows", ("metering.change_collectionwindow",))
STRIPE_EVENT_REPROCESS = Operation("reprocess Stripe events", ("payments.change_stripeevent",))


def may(caller: ServicePrincipal | AbstractBaseUser | AnonymousUser | None, operation: Operation) -> bool:
    """The one answer to "may this caller do that?" for the API and the admin alike."""
    if isinstance(caller, ServicePrincipal):
        return caller.is_platform or operation.project_keys
    if caller is None or not caller.is_active or not caller.is_staff:
        return False
    return caller.has_perms(operation.permissions)


def require(request: Request, operation: Operation) -> None:
    """403 forbidden unless the caller may perform the operation (call after the project lookup)."""
    caller = request.user
    if may(caller, operation):
        return
    if isinstance(caller, ServicePrincipal):
        raise Forbidden(f"a project API key may not {operation.description}: this needs a platform API key")
    needs = " and ".join(operation.permissions)
    if operation.project_keys:
        raise Forbidden(f"you may not {operation.description}: this needs a service API key or a staff user "
                        f"with the {needs} permission")
    raise Forbidden(f"you may not {operation.description}: this needs a platform API key or a staff user "
                    f"with the {needs} permission")


def caller_actor(request: Request) -> str:
    user = request.user
    if isinstance(user, ServicePrincipal):
        return user.actor
    return f"user:{user.pk}"


def visible_projects(request: Request) -> QuerySet[Project]:
    user = request.user
    projects = Project.objects.all()
    if isinstance(user, ServicePrincipal):
        return projects if user.is_platform else projects.filter(id=user.project_id)
    if may(user, SEE_ALL_PROJECTS):
        return projects
    return projects.filter(memberships__user=user)


def project_for_caller(request: Request, slug: str) -> Project:
    log_context.note_project(slug)  # the request's log line names the project it asked for
    project = visible_projects(request).filter(slug=slug).first()
    if project is None:
        raise NotFound(f"no project {slug!r}")
    return project


def project_id_for_caller(request: Request, slug: str) -> int:
    """The project's id only, without building a model: for the admission hot path."""
    log_context.note_project(slug)
    user = request.user
    if isinstance(user, ServicePrincipal) and user.is_platform:
        project_id = Project.objects.filter(slug=slug).values_list("id", flat=True).first()
    else:
        project_id = visible_projects(request).filter(slug=slug).values_list("id", flat=True).first()
    if project_id is None:
        raise NotFound(f"no project {slug!r}")
    return project_id
