"""Helpers of the gateway tests."""

import itertools

from gateway.models import MeteredRoute
from quotas.models import ResourceType
from wallets.models import Account

_ids = itertools.count()


def metered_route(path_prefix: str = "/v1/", price: int = 1_000_000, method: str = "*",
                  code: str = "api_call") -> MeteredRoute:
    """price: micro-credits per call (1 credit by default)."""
    return MeteredRoute.objects.create(method=method, path_prefix=path_prefix, price=price,
                                       resource_type=ResourceType.objects.get(code=code))


def authorize(client, key: str | None, uri: str = "/v1/chat", method: str = "GET", request_id: str | None = None,
              **headers):
    extra = {"HTTP_X_ORIGINAL_METHOD": method, "HTTP_X_ORIGINAL_URI": uri,
             "HTTP_X_REQUEST_ID": request_id or f"req-{next(_ids)}"}
    if key is not None:
        extra["HTTP_AUTHORIZATION"] = f"Bearer {key}"
    extra.update(headers)
    return client.get("/gateway/authorize", **extra)


def wallet_of(project) -> tuple[int, int]:
    """(balance, reserved) in micro-credits."""
    return Account.objects.filter(project=project).values_list("balance", "reserved").get()
