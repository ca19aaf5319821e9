"""Input of the admission API. Quantities and amounts are decimal strings; unknown fields are refused."""

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from creditservice.lib.fields import CreditsField, StrictSerializer
from creditservice.lib.money import MoneyError

from .quantities import parse_quantity


@extend_schema_field({"type": "string", "format": "decimal", "example": "2"})
class QuantityField(serializers.Field):
    """A resource quantity as a decimal string: finite, at most 6 places, > 0 (or >= 0 with allow_zero)."""

    default_error_messages = {"invalid": "{message}"}

    def __init__(self, *, allow_zero: bool = False, **kwargs: Any):
        self.allow_zero = allow_zero
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any):
        try:
            return parse_quantity(data, allow_zero=self.allow_zero)
        except MoneyError as exc:
            self.fail("invalid", message=str(exc))

    def to_representation(self, value):
        return str(value)


class AdmissionSerializer(StrictSerializer):
    """Body of POST /admission/check; POST /reservations adds ttl_seconds."""

    project = serializers.SlugField(max_length=63)
    resource_type = serializers.SlugField(max_length=50)
    quantity = QuantityField()
    amount = CreditsField(allow_zero=True, required=False, help_text="Credits to hold.")
    hourly_cost = CreditsField(required=False, help_text="Instead of amount: hold hourly_cost × the minimum runtime.")

    def validate(self, attrs: dict) -> dict:
        if ("amount" in attrs) == ("hourly_cost" in attrs):
            raise serializers.ValidationError({"amount": ["send exactly one of amount and hourly_cost"]})
        return attrs


class ReservationCreateSerializer(AdmissionSerializer):
    ttl_seconds = serializers.IntegerField(min_value=1, required=False,
                                           help_text="Seconds until the hold expires; capped by RESERVATION_MAX_TTL_SECONDS.")


class ReservationCommitSerializer(StrictSerializer):
    amount = CreditsField(allow_zero=True, required=False, help_text="Credits to charge, at most the held amount.")


class ReservationReleaseSerializer(StrictSerializer):
    """No fields: a stray body is refused rather than ignored."""


class ReservationFilterSerializer(StrictSerializer):
    status = serializers.ChoiceField(choices=["pending", "committed", "released", "expired"], required=False)
    cursor = serializers.CharField(required=False)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=200)


class QuotaLimitSerializer(StrictSerializer):
    limit = QuantityField(allow_zero=True, allow_null=True, help_text="null removes the limit.")


class QuotaReleaseSerializer(StrictSerializer):
    quantity = QuantityField()


class BudgetSerializer(StrictSerializer):
    hard_limit = CreditsField(allow_zero=True, allow_null=True, help_text="Credits per calendar month (UTC); null removes the budget.")
    soft_limit = CreditsField(allow_zero=True, allow_null=True, required=False, help_text="Alert threshold.")
