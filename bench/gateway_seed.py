"""Seeds the gateway bench through the project's own services: one funded project, its own API key and a
metered route for every call under /v1/ (resource type api_call); prints what the bench needs as JSON.

Run by bench.gateway in a subprocess with Django set up for the bench database: `python -m bench.gateway_seed`.
"""

import json

import django

SLUG = "bench-gateway"
CREDITS = "1000000"
# Micro-credits per call (0.001 credits): a million credits pay for a billion calls, never exhausted.
PRICE = 1_000
PATH_PREFIX = "/v1/"


def main() -> None:
    django.setup()

    from creditservice.lib.money import credits_to_micros
    from gateway.services import metered_route_create
    from quotas.models import ResourceType
    from wallets import services
    from wallets.auth import api_key_create

    project = services.project_create(slug=SLUG, name="Bench gateway")
    services.wallet_credit(project=project, amount=credits_to_micros(CREDITS), reason="bench seed",
                           idempotency_key=f"bench-seed-{SLUG}", actor="system")
    metered_route_create(method="*", path_prefix=PATH_PREFIX, resource_type=ResourceType.objects.get(code="api_call"),
                         price=PRICE)
    # A project's own key, as a gateway's caller holds one (the authorize endpoint takes no platform key).
    _, raw_key = api_key_create(name="bench gateway key", project=project)
    print(json.dumps({"key": raw_key, "project_id": project.id, "path": f"{PATH_PREFIX}bench"}))


if __name__ == "__main__":
    main()
