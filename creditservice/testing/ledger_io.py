"""The export/import tests' other databases: manage.py in a subprocess against a DATABASE_URL of its own,
and a rich ledger made through the services as the product makes it.

seed() runs in such a subprocess (SEED_COMMAND):
users, a group with a permission, projects with members and keys, quotas and a budget, held, committed and
released reservations, usage billed by a billing run (charges), a funded checkout session and its Stripe
event, a webhook endpoint, a status change, a metric query and its window, a ledger check.
"""

import json
import os
import sqlite3
import subprocess
import sys
import tempfile
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.utils import timezone

from billing.models import WebhookEndpoint
from billing.services import billing_run_execute
from billing.services.lifecycle import project_enter_grace
from creditservice.lib.money import credits_to_micros
from metering.models import CollectionWindow, MetricQuery, UsageEvent
from metering.services import usage_records_store
from payments.models import CheckoutSession, StripeEvent
from payments.services import checkout_session_fund
from quotas.models import ResourceType
from quotas.quantities import parse_quantity
from quotas.selectors import project_ref
from quotas.services import budget_set, quota_set_limit, reservation_commit, reservation_create, reservation_release
from wallets import services
from wallets.auth import api_key_create
from wallets.models import LedgerCheck, Membership

SEED_COMMAND = ("shell", "-c", "from creditservice.testing.ledger_io import seed; seed()")
COMMAND_TIMEOUT_SECONDS = 600  # a bound on a hung subprocess, not a timing assertion


def manage(database_url: str, *args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """Run manage.py against database_url with no broker (Celery's filesystem transport in a temporary folder)."""
    env = {k: v for k, v in os.environ.items() if k not in ("CELERY_BROKER_URL", "TEST_REDIS_URL", "REDIS_URL")}
    with tempfile.TemporaryDirectory(prefix="cs_export_celery_") as celery_dir:
        env |= {"DATABASE_URL": database_url, "CREDITSERVICE_TESTING": "1", "CELERY_FILESYSTEM_DIR": celery_dir}
        done = subprocess.run([sys.executable, "manage.py", *args], cwd=settings.BASE_DIR, env=env, input=stdin,
                              capture_output=True, text=True, timeout=COMMAND_TIMEOUT_SECONDS)
    if check and done.returncode != 0:
        raise AssertionError(f"manage.py {' '.join(args)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return done


def sqlite_rows(path: Path, model) -> list[tuple]:
    """Every row of a model's table in a SQLite file, by primary key, as stored; JSON columns parsed, since
    PostgreSQL's jsonb keeps a JSON value but not the order of its keys."""
    columns = [f.column for f in model._meta.concrete_fields]
    json_columns = {f.column for f in model._meta.concrete_fields if f.get_internal_type() == "JSONField"}
    select = ", ".join(f'"{c}"' for c in columns)
    with sqlite3.connect(path) as db:
        rows = db.execute(f'SELECT {select} FROM "{model._meta.db_table}" ORDER BY "{model._meta.pk.column}"').fetchall()
    return [tuple(json.loads(v) if c in json_columns and v is not None else v for c, v in zip(columns, row, strict=True))
            for row in rows]


def seed() -> None:
    User = get_user_model()
    staff = User.objects.create_user("staff", "staff@example.com", "pw-for-tests-1", is_staff=True)
    tenant = User.objects.create_user("tenant", "tenant@example.com", "pw-for-tests-1", first_name="Zoë")
    auditors = Group.objects.create(name="auditors")
    auditors.permissions.add(Permission.objects.get(codename="suspend_project"))
    staff.groups.add(auditors)
    staff.user_permissions.add(Permission.objects.get(codename="view_transfer"))

    acme = services.project_create(slug="acme", name="Acme Cloud", owner=tenant)
    globex = services.project_create(slug="globex", name="Globex — Research")
    Membership.objects.create(project=globex, user=staff, role=Membership.Role.MEMBER)
    services.wallet_credit(project=acme, amount=credits_to_micros("250"), reason="Welcome credits",
                           idempotency_key="v1:seed:acme", actor="system")
    services.wallet_credit(project=globex, amount=credits_to_micros("0.000001"), reason="one micro-credit",
                           idempotency_key="v1:seed:globex", actor="system")
    api_key_create(name="platform")
    api_key_create(name="acme scoped", project=acme)

    vm = ResourceType.objects.get(code="vm")
    quota_set_limit(project_id=acme.id, resource_type=vm, limit=parse_quantity("10"))
    budget_set(project_id=acme.id, hard_limit=credits_to_micros("200"), soft_limit=credits_to_micros("150"))
    ref = project_ref(project_id=acme.id)
    held = []
    for n in range(3):
        result = reservation_create(project=ref, resource_type=(vm.id, vm.code), quantity=parse_quantity("1"),
                                    amount=credits_to_micros("2.5"), ttl_seconds=3600, idempotency_scope="user:1",
                                    idempotency_key=f"hold-{n}", fingerprint=f"{n:064d}", actor="user:1")
        held.append(int(result.body["id"]))
    reservation_commit(reservation_id=held[0], amount=credits_to_micros("1.25"))
    reservation_release(reservation_id=held[1])

    window_start = (timezone.now() - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
    usage_records_store(resource_type_id=vm.id, window_start=window_start, window_end=window_start + timedelta(hours=1),
                        quantities={acme.id: parse_quantity("2"), globex.id: parse_quantity("1")},
                        source="push", source_reference="seed")
    UsageEvent.objects.create(project=acme, event_id="evt-1", resource_type=vm, quantity=parse_quantity("2"),
                              timestamp=window_start, window_start=window_start, received_at=timezone.now())
    WebhookEndpoint.objects.create(url="https://hooks.example.com/credits", event_types=["project.grace"])
    billing_run_execute(window_start=window_start, trigger="seed")
    project_enter_grace(project_id=globex.id)

    session = CheckoutSession.objects.create(
        project=acme, stripe_session_id="cs_test_seed", idempotency_key="v1:checkout:seed", amount=credits_to_micros("20"),
        currency="usd", currency_amount=2000, status=CheckoutSession.Status.OPEN, success_url="https://example.com/ok",
        cancel_url="https://example.com/cancel", created_by=f"user:{tenant.id}")
    checkout_session_fund(stripe_session={"id": session.stripe_session_id, "amount_total": 2000, "currency": "usd",
                                          "payment_intent": "pi_seed"})
    StripeEvent.objects.create(stripe_event_id="evt_seed", type="checkout.session.completed", status="processed",
                               payload={"id": "evt_seed", "data": {"object": {"id": "cs_test_seed", "amount_total": 2000}},
                                        "rate": 0.5, "note": "naïve ✓"}, attempts=1, processed_at=timezone.now())

    query = MetricQuery.objects.create(resource_type=ResourceType.objects.get(code="gpu"),
                                       promql="sum by (project) (increase(gpu_seconds_total[{window}]))")
    CollectionWindow.objects.create(metric_query=query, window_start=window_start, window_end=window_start + timedelta(hours=1),
                                    status=CollectionWindow.Status.COLLECTED, attempts=1, collected_at=timezone.now())
    services.ledger_check_run(source=LedgerCheck.Source.COMMAND)
