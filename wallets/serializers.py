from collections.abc import Callable

from rest_framework import serializers

from creditservice.lib.fields import CreditsField, StrictSerializer
from creditservice.lib.money import format_amount

from .models import Project, Transfer


class ProjectSerializer(serializers.ModelSerializer):
    class Meta:
        model = Project
        fields = ["slug", "name", "status", "grace_until", "suspended_by_staff", "suspension_reason", "created_at"]
        read_only_fields = ["status", "grace_until", "suspended_by_staff", "suspension_reason", "created_at"]


class ProjectCreateSerializer(StrictSerializer):
    slug = serializers.SlugField(max_length=63)
    name = serializers.CharField(max_length=200)


class WalletMovementSerializer(StrictSerializer):
    amount = CreditsField()
    reason = serializers.CharField(max_length=500, allow_blank=False)


# Higher apps add fields to the wallet answer (billing adds burn_rate_per_hour and runway_hours)
# without this app importing them: each extension maps a project to extra keys.
wallet_body_extensions: list[Callable[[Project], dict]] = []


def wallet_body(project: Project) -> dict:
    wallet = project.wallet
    body = {
        "project": project.slug,
        "balance": format_amount(wallet.balance),
        "reserved": format_amount(wallet.reserved),
        "available": format_amount(wallet.available),
        "status": project.status,
        "updated_at": wallet.updated_at.isoformat().replace("+00:00", "Z"),
    }
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
        "reference": transfer.reference,
        "created_at": transfer.created_at.isoformat().replace("+00:00", "Z"),
    }


class TransactionFilterSerializer(StrictSerializer):
    kind = serializers.ChoiceField(choices=Transfer.Kind.choices, required=False)
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    cursor = serializers.CharField(required=False)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=200)
