"""Who may see which project. Every project lookup of the API goes through here.

A project the caller may not see is answered 404, never 403, so its existence is not revealed.
"""

from django.db.models import QuerySet
from rest_framework.request import Request

from creditservice.lib.errors import Forbidden, NotFound

from .auth import ServicePrincipal
from .models import Project


def caller_actor(request: Request) -> str:
    user = request.user
    if isinstance(user, ServicePrincipal):
        return user.actor
    return f"user:{user.pk}"


def is_platform_or_staff(request: Request) -> bool:
    user = request.user
    if isinstance(user, ServicePrincipal):
        return user.is_platform
    return bool(user and user.is_staff)


def require_platform_or_staff(request: Request) -> None:
    if not is_platform_or_staff(request):
        raise Forbidden("this needs a platform API key or a staff user")


def visible_projects(request: Request) -> QuerySet[Project]:
    user = request.user
    projects = Project.objects.all()
    if isinstance(user, ServicePrincipal):
        return projects if user.is_platform else projects.filter(id=user.project_id)
    if user.is_staff:
        return projects
    return projects.filter(memberships__user=user)


def project_for_caller(request: Request, slug: str) -> Project:
    project = visible_projects(request).filter(slug=slug).first()
    if project is None:
        raise NotFound(f"no project {slug!r}")
    return project


def project_id_for_caller(request: Request, slug: str) -> int:
    """The project's id only, without building a model: for the admission hot path."""
    user = request.user
    if isinstance(user, ServicePrincipal) and user.is_platform:
        project_id = Project.objects.filter(slug=slug).values_list("id", flat=True).first()
    else:
        project_id = visible_projects(request).filter(slug=slug).values_list("id", flat=True).first()
    if project_id is None:
        raise NotFound(f"no project {slug!r}")
    return project_id
