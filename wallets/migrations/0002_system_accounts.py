from django.db import migrations

SYSTEM_ACCOUNTS = ["stripe", "revenue", "promotions", "adjustments"]


def create_system_accounts(apps, schema_editor):
    Account = apps.get_model("wallets", "Account")
    for code in SYSTEM_ACCOUNTS:
        Account.objects.get_or_create(code=code, defaults={"kind": "system"})


class Migration(migrations.Migration):
    dependencies = [("wallets", "0001_initial")]
    operations = [migrations.RunPython(create_system_accounts, migrations.RunPython.noop)]
