"""Seeds the admission bench through the project's own services; prints what the clients need as JSON.

Run by bench.run in a subprocess with Django set up for the bench database:
`python -m bench.seed [--projects 100]`.
"""

import argparse
import json

import django


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--projects", type=int, default=100)
    parser.add_argument("--credits", default="1000000")
    args = parser.parse_args()
    django.setup()

    from creditservice.lib.money import credits_to_micros
    from quotas.models import ResourceType
    from wallets import ledger, services
    from wallets.auth import api_key_create
    from wallets.models import Account

    amount = credits_to_micros(args.credits)
    slugs = [f"bench-{i:03d}" for i in range(args.projects)]
    hot = "bench-hot"
    wallet_ids: dict[str, int] = {}
    for slug in [*slugs, hot]:
        project = services.project_create(slug=slug, name=f"Bench {slug}")
        services.wallet_credit(project=project, amount=amount, reason="bench seed",
                               idempotency_key=f"bench-seed-{slug}", actor="system")
        wallet_ids[slug] = ledger.wallet_account_id(project.id)
    _, raw_key = api_key_create(name="bench platform key")
    project_ids = dict(Account.objects.filter(id__in=wallet_ids.values()).values_list("id", "project_id"))
    print(json.dumps({
        "key": raw_key,
        "slugs": slugs,
        "hot": hot,
        "wallets": [[wallet_ids[s], project_ids[wallet_ids[s]]] for s in slugs],
        "hot_wallet": [wallet_ids[hot], project_ids[wallet_ids[hot]]],
        "revenue_account": ledger.system_account_id(Account.System.REVENUE),
        "vm_type": ResourceType.objects.get(code="vm").id,
    }))


if __name__ == "__main__":
    main()
