from rest_framework import serializers

from creditservice.lib.fields import CreditsField, StrictSerializer
from creditservice.lib.money import format_amount
from creditservice.lib.text import no_control_characters

from .models import MAX_PATH_PREFIX_LENGTH, MeteredRoute
from .selectors import normalized_path


class MeteredRouteSerializer(StrictSerializer):
    method = serializers.ChoiceField(choices=MeteredRoute.Method.values)
    path_prefix = serializers.CharField(max_length=MAX_PATH_PREFIX_LENGTH)
    resource_type = serializers.SlugField(max_length=50)
    price = CreditsField(help_text="Credits charged per call (a decimal string, more than 0).")

    def validate_path_prefix(self, value: str) -> str:
        no_control_characters(value)
        if not value.startswith("/"):
            raise serializers.ValidationError('must start with "/"')
        if "?" in value or "#" in value or "%" in value or " " in value:
            raise serializers.ValidationError("a path only: no query, fragment, percent-encoding or space")
        # Calls are matched on their normalized path, so a prefix that is not normalized would match none.
        if normalized_path(value) != value:
            raise serializers.ValidationError(f"must be a normalized path (no //, . or ..): {normalized_path(value)!r}")
        return value


def route_body(route: MeteredRoute) -> dict:
    return {
        "id": route.id,
        "method": route.method,
        "path_prefix": route.path_prefix,
        "resource_type": route.resource_type.code,
        "price": format_amount(route.price),
        "created_at": route.created_at.isoformat().replace("+00:00", "Z"),
    }
