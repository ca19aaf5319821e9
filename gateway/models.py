"""Gateway admission: per-call metering at the edge (nginx auth_request, Envoy ext_authz).

A metered route says what one call of a method and path prefix costs; a gateway charge is one call
charged, under a unique (project, request id), so an authorize repeated for the same request charges
once.
"""

from django.db import models

from creditservice.lib.money import MAX_AMOUNT_MICROS, format_amount

# Bounds of what staff and platform keys may store (checked where data enters, held by the database).
MAX_PATH_PREFIX_LENGTH = 200
MAX_REQUEST_ID_LENGTH = 255


class MeteredRoute(models.Model):
    """Calls of `method` (or any method: "*") to paths under `path_prefix` cost `price` each.

    The longest matching prefix wins; at the same prefix an exact method wins over "*". A prefix
    matches whole segments: "/v1/chat" matches /v1/chat and /v1/chat/x, never /v1/chats."""

    ANY_METHOD = "*"

    class Method(models.TextChoices):
        ANY = "*", "any method"
        GET = "GET"
        HEAD = "HEAD"
        POST = "POST"
        PUT = "PUT"
        PATCH = "PATCH"
        DELETE = "DELETE"
        OPTIONS = "OPTIONS"

    method = models.CharField(max_length=7, choices=Method.choices, default=Method.ANY)
    path_prefix = models.CharField(max_length=MAX_PATH_PREFIX_LENGTH, help_text='Starts with "/"; whole segments.')
    resource_type = models.ForeignKey("quotas.ResourceType", on_delete=models.PROTECT, related_name="metered_routes")
    # Micro-credits charged per call.
    price = models.BigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["method", "path_prefix"], name="metered_route_method_prefix_unique"),
            models.CheckConstraint(condition=models.Q(price__gt=0, price__lte=MAX_AMOUNT_MICROS),
                                   name="metered_route_price_within_bounds"),
            models.CheckConstraint(condition=models.Q(path_prefix__startswith="/"), name="metered_route_prefix_absolute"),
        ]
        ordering = ["path_prefix", "method"]

    def __str__(self) -> str:
        return f"{self.method} {self.path_prefix}: {format_amount(self.price)} credits"


class GatewayCharge(models.Model):
    """One call charged. Its row claims (project, request id) first in the charging transaction, so a
    repeated or concurrent authorize of the same request waits on the unique index and charges nothing."""

    project = models.ForeignKey("wallets.Project", on_delete=models.PROTECT, related_name="gateway_charges")
    # nginx's $request_id, or the client's Idempotency-Key when it sent one.
    request_id = models.CharField(max_length=MAX_REQUEST_ID_LENGTH)
    route = models.ForeignKey(MeteredRoute, on_delete=models.SET_NULL, null=True, blank=True, related_name="charges")
    # Micro-credits charged (the route's price then).
    amount = models.BigIntegerField()
    # SHA-256 of "METHOD path": a request id replayed for another call is refused, not waved through.
    fingerprint = models.CharField(max_length=64)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["project", "request_id"], name="gateway_charge_request_unique"),
            models.CheckConstraint(condition=models.Q(amount__gt=0, amount__lte=MAX_AMOUNT_MICROS),
                                   name="gateway_charge_amount_within_bounds"),
        ]

    def __str__(self) -> str:
        return f"gateway charge {self.id} ({format_amount(self.amount)} credits)"
