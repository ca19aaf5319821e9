from collections.abc import Callable

from rest_framework import serializers

from creditservice.lib.fields import CreditsField, StrictSerializer
from creditservice.lib.money import format_amount
from creditservice.lib.pagination import MAX_CURSOR_LENGTH, MAX_PAGE_SIZE
from creditservice.lib.text import PlainTextField

from .models import Project, Transfer
from .selectors import EXPIRING_WINDOW_DAYS, wallet_figures_of, wallet_grant_summary


class ProjectSerializer(serializers.ModelSerializer):
    class Meta:
        model = Project
        fields = ["slug", "name", "status", "grace_until", "suspended_by_staff", "suspension_reason", "created_at"]
        read_only_fields = ["status", "grace_until", "suspended_by_staff", "suspension_reason", "created_at"]


class ProjectCreateSerializer(StrictSerializer):
    slug = serializers.SlugField(max_length=63)
    name = PlainTextField(max_length=200)


class WalletMovementSerializer(StrictSerializer):
    amount = CreditsField()
    reason = PlainTextField(max_length=500, allow_blank=False)


# Higher apps add fields to the wallet answer (billing adds burn_rate_per_hour and runway_hours)
# without this app importing them: each extension maps a project to extra keys.
wallet_body_extensions: list[Callable[[Project], dict]] = []


def wallet_body(project: Project) -> dict:
    wallet = project.wallet
    # reserved and available as admission sees them: a hold past its expiry is already freed.
    figures = wallet_figures_of(wallet)
    body = {
        "project": project.slug,
        "balance": format_amount(figures.balance),
        "reserved": format_amount(figures.reserved),
        "available": format_amount(figures.available),
        "status": project.status,
        "updated_at": wallet.updated_at.isoformat().replace("+00:00", "Z"),
    }
    grants = wallet_grant_summary(wallet.id)
    body["grants"] = {category: format_amount(total) for category, total in grants.by_category.items()}
    body[f"expiring_within_{EXPIRING_WINDOW_DAYS}_days"] = format_amount(grants.expiring_soon)
    # Part of `available`, yet only for the resource types its grants name: the figure a reservation
    # of another type does not count.
    body["scoped_to_resource_types"] = format_amount(grants.scoped)
    for extension in wallet_body_extensions:
        body.update(extension(project))
    return body


def transfer_body(transfer: Transfer, wallet_id: int) -> dict:
    return {
        "id": transfer.id,
        "kind": transfer.kind,
        "amount": format_amount(transfer.signed_amount_for(wallet_id)),
        "balance_after": format_amount(transfer.wallet_balance_after),
        "reason": transfer.reason,
        # What the line is for, in words; higher apps say more for the lines they wrote (see below).
        "description": transfer.reason,
        "reference": transfer.reference,
        "created_at": transfer.created_at.isoformat().replace("+00:00", "Z"),
    }


# Higher apps explain the statement lines they caused (billing: a usage charge's resource type, window,
# quantity, unit and rate), read at read time so their writers stay set-based. Each extension maps one
# page of transfers to {transfer id: extra keys} with a bounded number of queries (not one per line).
transactions_page_extensions: list[Callable[[list[Transfer]], dict[int, dict]]] = []


def transfer_page_bodies(transfers: list[Transfer], wallet_id: int) -> list[dict]:
    """One page of GET /projects/{slug}/transactions."""
    bodies = [transfer_body(transfer, wallet_id) for transfer in transfers]
    for extension in transactions_page_extensions:
        extra = extension(transfers)
        for body in bodies:
            body.update(extra.get(body["id"], {}))
    return bodies


class TransactionFilterSerializer(StrictSerializer):
    kind = serializers.ChoiceField(choices=Transfer.Kind.choices, required=False)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    cursor = serializers.CharField(required=False, max_length=MAX_CURSOR_LENGTH)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=MAX_PAGE_SIZE)
