import factory
from django.contrib.auth import get_user_model

from creditservice.lib.money import credits_to_micros
from wallets import services
from wallets.auth import api_key_create
from wallets.models import Membership, Project


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.com")
    password = factory.PostGenerationMethodCall("set_password", "pw-for-tests-1")

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class ProjectFactory(factory.Factory):
    """Projects are made through the service so each has its wallet account."""

    class Meta:
        model = Project

    slug = factory.Sequence(lambda n: f"project-{n}")
    name = factory.LazyAttribute(lambda p: p.slug.replace("-", " ").title())

    @classmethod
    def _create(cls, model_class, slug: str, name: str, balance: str | None = None, owner=None, **kwargs):
        project = services.project_create(slug=slug, name=name, owner=owner)
        if balance:
            fund(project, balance)
        return Project.objects.select_related("wallet").get(pk=project.pk)


def fund(project: Project, credits: str, key: str | None = None) -> None:
    services.wallet_credit(project=project, amount=credits_to_micros(credits), reason="test funding",
                           idempotency_key=key or f"test-fund:{project.slug}:{credits}:{Project.objects.count()}:{id(object())}",
                           actor="system")


def member(project: Project, user=None, role: str = Membership.Role.MEMBER):
    user = user or UserFactory()
    Membership.objects.create(project=project, user=user, role=role)
    return user


def platform_key(name: str = "platform") -> str:
    return api_key_create(name=name)[1]


def scoped_key(project: Project, name: str = "scoped") -> str:
    return api_key_create(name=name, project=project)[1]
