"""DRF fields and helpers shared by every app's API."""

from typing import Any

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from .money import DECIMAL_FORM_PATTERN, MoneyError, format_amount, parse_amount

# Every amount and quantity in the schema: a string in money's one grammar.
DECIMAL_STRING_SCHEMA = {"type": "string", "format": "decimal", "pattern": DECIMAL_FORM_PATTERN}


@extend_schema_field({**DECIMAL_STRING_SCHEMA, "example": "12.5"})
class CreditsField(serializers.Field):
    """Credits as a decimal string in money's one grammar (ASCII digits, at most 6 places); integer
    micro-credits inside."""

    default_error_messages = {"invalid": "{message}"}

    def __init__(self, *, allow_zero: bool = False, **kwargs: Any):
        self.allow_zero = allow_zero
        super().__init__(**kwargs)

    def to_internal_value(self, data: Any) -> int:
        try:
            return parse_amount(data, allow_zero=self.allow_zero)
        except MoneyError as exc:
            self.fail("invalid", message=str(exc))

    def to_representation(self, value: int) -> str:
        return format_amount(value)


@extend_schema_field(OpenApiTypes.STR)
class MicrosField(serializers.ReadOnlyField):
    def to_representation(self, value: int) -> str:
        return format_amount(value)


class StrictSerializer(serializers.Serializer):
    """Refuses fields it does not know, so a typo ("amout") is an error, not a silent default; and a
    number where the schema says string (DRF's CharField would store {"reason": 12} as "12")."""

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["unknown field"] for name in unknown})
            not_text = sorted(name for name, value in data.items() if isinstance(self.fields[name], serializers.CharField)
                              and value is not None and not isinstance(value, str))
            if not_text:
                raise serializers.ValidationError({name: ["must be a string"] for name in not_text})
        return super().to_internal_value(data)
