"""Existing balances become grants, one per wallet with a positive balance (purchased, no expiry), so that
the sum of a wallet's remaining equals max(balance, 0) from the start; and the beat schedule of the
grant expiry task. Integer micro-credits; plain ORM, so both backends run it."""

from django.db import migrations

EXPIRY = "wallets: expire grants"
MIGRATED_REASON = "balance before credit grants"
PURCHASED_PRIORITY = 50  # wallets/ledger/grants.py DEFAULT_PRIORITY["purchased"]


def balances_to_grants(apps, schema_editor):
    Account = apps.get_model("wallets", "Account")
    Grant = apps.get_model("wallets", "Grant")
    wallets = Account.objects.filter(kind="wallet", balance__gt=0, grants__isnull=True).values_list("id", "balance")
    batch = []
    for wallet_id, balance in wallets.iterator(chunk_size=2000):
        batch.append(Grant(wallet_id=wallet_id, category="purchased", amount=balance, remaining=balance,
                           priority=PURCHASED_PRIORITY, reason=MIGRATED_REASON, actor="system"))
        if len(batch) >= 2000:
            Grant.objects.bulk_create(batch)
            batch = []
    Grant.objects.bulk_create(batch)


def grants_to_balances(apps, schema_editor):
    apps.get_model("wallets", "Grant").objects.filter(reason=MIGRATED_REASON, source_transfer__isnull=True).delete()


def schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    every_minute, _ = IntervalSchedule.objects.get_or_create(every=1, period="minutes")
    PeriodicTask.objects.get_or_create(name=EXPIRY, defaults={
        "task": "wallets.expire_grants", "interval": every_minute, "enabled": True,
        "description": "Moves the unspent rest of grants past expires_at to the expired account, once each."})
    from django.utils import timezone

    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def unschedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=EXPIRY).delete()


class Migration(migrations.Migration):
    dependencies = [("wallets", "0013_grants"), ("django_celery_beat", "0019_alter_periodictasks_options")]
    operations = [migrations.RunPython(balances_to_grants, grants_to_balances),
                  migrations.RunPython(schedule, unschedule)]
