"""Transfers are append-only in the database too: any UPDATE or DELETE of a transfer is refused by a
trigger, on PostgreSQL and on SQLite, so that code bypassing wallets/ledger (a raw statement, a
queryset .update() or .delete(), a data migration) cannot rewrite the books. A correction is a
reversing transfer. What is installed, and the maintenance that may stand it aside: wallets/append_only.py.

It runs after 0007, whose CHECKs rebuild wallets_transfer on SQLite: a rebuild drops the triggers.
"""

from django.db import migrations

from wallets.append_only import install, uninstall


class Migration(migrations.Migration):
    dependencies = [
        ("wallets", "0007_ledger_bounds_checks"),
    ]
    operations = [migrations.RunPython(install, uninstall, elidable=False)]
