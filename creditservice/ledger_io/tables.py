"""Which tables an export carries, which it leaves out and why, and the order that satisfies foreign keys.

Every model Django knows (auto-created many-to-many tables too) is classified exactly once, here:
creditservice/tests/test_ledger_io_tables.py fails for a model added later until it is put in
INCLUDED or EXCLUDED_MODELS. Whole third-party apps that hold no ledger state are in EXCLUDED_APPS.
"""

from collections.abc import Iterable

from django.apps import apps
from django.db import models

# The domain apps: none of their models may be left out by app, each is classified by name.
DOMAIN_APPS = ("wallets", "quotas", "metering", "billing", "payments", "portal", "gateway")

# Model labels, in any order (table_order() sorts them by their foreign keys). A label of an app that
# is not installed is passed over (an app comes with its INSTALLED_APPS line); any other must be a model.
INCLUDED = (
    # Users and groups: memberships point at users, and staff keep their permissions. Their
    # permission links are written by natural key (NATURAL_KEY_MODELS): ids differ between databases.
    "auth.User",
    "auth.Group",
    "auth.User_groups",
    "auth.User_user_permissions",
    "auth.Group_permissions",
    "wallets.Project",
    "wallets.Membership",
    "wallets.Account",
    "wallets.Transfer",
    "wallets.ApiKey",  # SHA-256 hashes only: a key keeps working after the move
    "wallets.LedgerCheck",
    "wallets.Grant",  # with remaining and closed state: an expiry or void is not repeated after the move
    "wallets.GrantDraw",
    "quotas.ResourceType",
    "quotas.QuotaDefault",
    "quotas.Quota",
    "quotas.Reservation",
    "quotas.Budget",
    "metering.Price",
    "metering.MetricQuery",
    "metering.UsageRecord",
    "metering.UsageEvent",
    "metering.CollectionWindow",  # which windows were collected: none is collected twice after the move
    "billing.BillingRun",
    "billing.BillingChunk",
    "billing.OwedCharge",
    "billing.Charge",
    "billing.ProjectStatusChange",
    "billing.WebhookEndpoint",
    "billing.WebhookDelivery",
    "billing.ThresholdAlert",  # with its armed/fired state: a crossing is not notified again after the move
    "billing.AlertNotification",
    "payments.CheckoutSession",
    "payments.StripeEvent",  # Stripe's event ids: a redelivered webhook is still "already have it"
    "payments.AutoTopUp",  # the saved card, the settings and the tenant's recorded consent
    "payments.AutoTopUpCharge",  # one row per crossing: a crossing already charged is not charged again
    "gateway.MeteredRoute",
    "gateway.GatewayCharge",  # (project, request id) claims: a repeated authorize still charges once
)

EXCLUDED_MODELS = {
    "wallets.IdempotencyRecord": (
        "API Idempotency-Key answers, purged after IDEMPOTENCY_KEY_TTL; writes are quiesced for the move and every "
        "ledger write keeps its own idempotency key on its transfer, which does move"),
    "auth.Permission": "created by migrate on the target (post_migrate); referred to by natural key",
    "contenttypes.ContentType": "created by migrate on the target (post_migrate); referred to by natural key",
    "admin.LogEntry": "the admin's change history: UI history pointing at content type ids, not the books",
    "sessions.Session": "sign-in sessions: everyone signs in again after the move; carries session secrets",
}

EXCLUDED_APPS = {
    "django_celery_beat": "the beat schedule: migrations ship it on the target; its last-run times belong to the old beat",
    "axes": "sign-in throttle counters and logs: transient, per address",
}

# Foreign keys to these are written as the target's natural key, not as an id.
NATURAL_KEY_MODELS = ("auth.Permission", "contenttypes.ContentType")


class Classification(ValueError):
    """A model is classified twice, not at all, or a listed label names no model."""


def all_models() -> list[type[models.Model]]:
    return list(apps.get_models(include_auto_created=True))


def unclassified() -> list[str]:
    """Labels of models that are neither included nor excluded (empty when every model is covered)."""
    excluded = set(EXCLUDED_MODELS)
    return sorted(
        m._meta.label for m in all_models()
        if m._meta.label not in INCLUDED and m._meta.label not in excluded
        and (m._meta.app_label not in EXCLUDED_APPS or m._meta.app_label in DOMAIN_APPS)
    )


def included_models() -> list[type[models.Model]]:
    """The exported models in dependency order: each after every model its foreign keys point at."""
    return table_order(apps.get_model(label) for label in INCLUDED if _installed(label))


def _installed(label: str) -> bool:
    return any(config.label == label.split(".")[0] for config in apps.get_app_configs())


def table_order(candidates: Iterable[type[models.Model]]) -> list[type[models.Model]]:
    pending = list(candidates)
    included = {m._meta.label for m in pending}
    placed: list[type[models.Model]] = []
    done: set[str] = set()
    # At most len(pending) rounds, each placing at least one model, or the foreign keys form a cycle.
    while pending:
        ready = [m for m in pending if dependencies(m) & included <= done | {m._meta.label}]
        if not ready:
            raise Classification(f"foreign keys form a cycle among {sorted(m._meta.label for m in pending)}")
        for model in ready:
            placed.append(model)
            done.add(model._meta.label)
            pending.remove(model)
    return placed


def dependencies(model: type[models.Model]) -> set[str]:
    return {f.related_model._meta.label for f in model._meta.concrete_fields if f.is_relation}


def natural_key_fields(model: type[models.Model]) -> dict[str, type[models.Model]]:
    """attname -> related model, for the foreign keys written by natural key."""
    return {f.attname: f.related_model for f in model._meta.concrete_fields
            if f.is_relation and f.related_model._meta.label in NATURAL_KEY_MODELS}


def validate() -> None:
    for label in (*INCLUDED, *EXCLUDED_MODELS):
        if not _installed(label):
            continue
        try:
            apps.get_model(label)
        except LookupError as error:
            raise Classification(f"{label} is listed in creditservice/ledger_io/tables.py but is no model") from error
    twice = set(INCLUDED) & set(EXCLUDED_MODELS)
    if twice:
        raise Classification(f"both included and excluded: {sorted(twice)}")
    missing = unclassified()
    if missing:
        raise Classification(f"not classified for export (creditservice/ledger_io/tables.py): {missing}")
    for model in included_models():
        for attname, related in natural_key_fields(model).items():
            if not hasattr(related._default_manager, "get_by_natural_key"):
                raise Classification(f"{model._meta.label}.{attname}: {related._meta.label} has no natural key")
