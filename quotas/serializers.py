"""Input of the admission API. Quantities and amounts are decimal strings; unknown fields are refused."""

import re
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from creditservice.lib.fields import DECIMAL_STRING_SCHEMA, CreditsField, StrictSerializer
from creditservice.lib.money import MoneyError
from creditservice.lib.pagination import MAX_CURSOR_LENGTH, MAX_PAGE_SIZE

from .quantities import format_quantity, parse_quantity


@extend_schema_field({**DECIMAL_STRING_SCHEMA, "example": "2"})
class QuantityField(serializers.Field):
    """A resource quantity as a decimal string in money's one grammar, > 0 (or >= 0 with allow_zero);
    integer micro-units inside."""

    default_error_messages = {"invalid": "{message}"}

    def __init__(self, *, allow_zero: bool = False, **kwargs: Any):
        self.allow_zero = allow_zero
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any):
        try:
            return parse_quantity(data, allow_zero=self.allow_zero)
        except MoneyError as exc:
            self.fail("invalid", message=str(exc))

    def to_representation(self, value: int) -> str | None:
        return format_quantity(value)


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
    ttl_seconds = serializers.IntegerField(min_value=1, required=False, help_text=(
        "Seconds until the hold expires: 1 to RESERVATION_MAX_TTL_SECONDS (86400 by default); more is a 400."))

    def validate_ttl_seconds(self, value: int) -> int:
        try:
            return parse_ttl_seconds(value)
        except MoneyError as exc:
            raise serializers.ValidationError(str(exc)) from None


class ReservationCommitSerializer(StrictSerializer):
    amount = CreditsField(allow_zero=True, required=False, help_text="Credits to charge, at most the held amount.")


class ReservationReleaseSerializer(StrictSerializer):
    """No fields: a stray body is refused rather than ignored."""


class ReservationFilterSerializer(StrictSerializer):
    status = serializers.ChoiceField(choices=["pending", "committed", "released", "expired"], required=False)
    cursor = serializers.CharField(required=False, max_length=MAX_CURSOR_LENGTH)
    page_size = serializers.IntegerField(required=False, min_value=1, max_value=MAX_PAGE_SIZE)


class QuotaLimitSerializer(StrictSerializer):
    limit = QuantityField(allow_zero=True, allow_null=True, help_text="null removes the limit.")


class QuotaReleaseSerializer(StrictSerializer):
    quantity = QuantityField()


class BudgetSerializer(StrictSerializer):
    hard_limit = CreditsField(allow_zero=True, allow_null=True, help_text="Credits per calendar month (UTC); null removes the budget.")
    soft_limit = CreditsField(allow_zero=True, allow_null=True, required=False, help_text="Alert threshold.")


# --- Lean parsing for the hot path ------------------------------------------------------------
# A DRF serializer deep-copies its fields on every instantiation (~0.3 ms of CPU a request here); the
# two hot endpoints parse their small bodies with the same field rules and the same error shape.

_RESERVATION_FIELDS = frozenset(ReservationCreateSerializer._declared_fields)


_SLUG = re.compile(r"[-a-zA-Z0-9_]+")


def _slug(value: object, max_length: int) -> str:
    if not isinstance(value, str) or len(value) > max_length or not _SLUG.fullmatch(value):
        raise MoneyError("Enter a valid \"slug\" consisting of letters, numbers, underscores or hyphens.")
    return value


def parse_reservation(data: object) -> dict:
    """ReservationCreateSerializer's rules without building it; raises ValidationFailed({field: [...]})."""
    from creditservice.lib.errors import ValidationFailed
    from creditservice.lib.money import parse_amount

    if not isinstance(data, dict):
        raise ValidationFailed({"non_field_errors": ["Invalid data. Expected a dictionary."]})
    errors: dict[str, list[str]] = {name: ["unknown field"] for name in sorted(set(data) - _RESERVATION_FIELDS)}
    if errors:
        raise ValidationFailed(errors)
    parsed: dict = {}
    rules = (
        ("project", True, lambda v: _slug(v, 63)),
        ("resource_type", True, lambda v: _slug(v, 50)),
        ("quantity", True, parse_quantity),
        ("amount", False, lambda v: parse_amount(v, allow_zero=True)),
        ("hourly_cost", False, parse_amount),
        ("ttl_seconds", False, parse_ttl_seconds),
    )
    for name, required, parse in rules:
        if name not in data:
            if required:
                errors[name] = ["This field is required."]
            continue
        if data[name] is None:
            errors[name] = ["This field may not be null."]
            continue
        try:
            parsed[name] = parse(data[name])
        except MoneyError as exc:
            errors[name] = [str(exc)]
    if not errors and ("amount" in parsed) == ("hourly_cost" in parsed):
        errors["amount"] = ["send exactly one of amount and hourly_cost"]
    if errors:
        raise ValidationFailed(errors)
    return parsed


_SECONDS = re.compile(r"[0-9]{1,19}")


def parse_ttl_seconds(value: object) -> int:
    """A JSON integer (or a string of ASCII digits) from 1 to RESERVATION_MAX_TTL_SECONDS, read at call time.

    Beyond the maximum is refused, not capped: a caller that asked for a day and silently got less
    would find its resource's hold gone early.
    """
    from django.conf import settings

    if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, str) and _SECONDS.fullmatch(value))):
        raise MoneyError("A valid integer is required.")
    number = int(value)
    maximum = settings.RESERVATION_MAX_TTL_SECONDS
    if not 1 <= number <= maximum:
        raise MoneyError(f"must be from 1 to {maximum} seconds (RESERVATION_MAX_TTL_SECONDS)")
    return number


def parse_commit(data: object) -> int | None:
    """ReservationCommitSerializer's rules: {} or {"amount": "<credits, may be 0>"}; the amount or None."""
    from creditservice.lib.errors import ValidationFailed
    from creditservice.lib.money import parse_amount

    if data is None or data == {}:
        return None
    if not isinstance(data, dict):
        raise ValidationFailed({"non_field_errors": ["Invalid data. Expected a dictionary."]})
    unknown = sorted(set(data) - {"amount"})
    if unknown:
        raise ValidationFailed({name: ["unknown field"] for name in unknown})
    try:
        return parse_amount(data["amount"], allow_zero=True)
    except MoneyError as exc:
        raise ValidationFailed({"amount": [str(exc)]}) from None
