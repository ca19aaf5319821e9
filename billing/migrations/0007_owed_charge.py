"""Owed billing: what a run could not charge is kept and retried until it is charged.

Runs that are partial today owe what their last attempt failed: each failed chunk its range of
projects, each failing project itself. They are due at once, so the next beat retries them.
"""

from collections import defaultdict

import django.db.models.deletion
from django.db import migrations, models
from django.utils import timezone


def owe_what_partial_runs_failed(apps, schema_editor):
    BillingRun = apps.get_model("billing", "BillingRun")
    BillingChunk = apps.get_model("billing", "BillingChunk")
    OwedCharge = apps.get_model("billing", "OwedCharge")
    now = timezone.now()
    for run in BillingRun.objects.filter(status="partial"):
        ranges: dict[tuple[int, int], str] = {}
        for chunk in BillingChunk.objects.filter(run=run, attempt=run.attempt, status="failed"):
            ranges[(chunk.first_project_id, chunk.last_project_id)] = chunk.error or "the chunk failed"
        by_project: dict[int, list[dict]] = defaultdict(list)
        for failure in run.failures:
            by_project[failure["project_id"]].append(failure)
        rows = [OwedCharge(run=run, first_project_id=first, last_project_id=last, late_usage_since=run.late_usage_since,
                           attempts=1, next_retry_at=now, last_attempt_at=run.finished_at, last_error=error[:4000])
                for (first, last), error in ranges.items()]
        rows += [OwedCharge(run=run, first_project_id=project_id, last_project_id=project_id, project_id=project_id,
                            late_usage_since=run.late_usage_since, attempts=1, next_retry_at=now,
                            last_attempt_at=run.finished_at, failures=items[:50],
                            last_error="; ".join(sorted({f["reason"] for f in items}))[:4000])
                 for project_id, items in sorted(by_project.items())]
        OwedCharge.objects.bulk_create(rows, batch_size=500, ignore_conflicts=True)


class Migration(migrations.Migration):

    dependencies = [
        ("billing", "0006_charge_quantities_in_micro_units_rate_in_picos"),
        ("wallets", "0003_schedule_idempotency_purge"),
    ]

    operations = [
        migrations.CreateModel(
            name="OwedCharge",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("first_project_id", models.BigIntegerField()),
                ("last_project_id", models.BigIntegerField()),
                ("late_usage_since", models.DateTimeField(blank=True, null=True)),
                ("status", models.CharField(choices=[("owed", "Owed"), ("charged", "Charged"), ("split", "Split")],
                                            default="owed", max_length=8)),
                ("attempts", models.PositiveIntegerField(default=0)),
                ("next_retry_at", models.DateTimeField(blank=True, null=True)),
                ("last_attempt_at", models.DateTimeField(blank=True, null=True)),
                ("last_error", models.TextField(blank=True)),
                ("failures", models.JSONField(blank=True, default=list,
                                              help_text="Of the last attempt: [{project_id, resource_type_id, window_start, reason}]")),
                ("charges_created", models.PositiveIntegerField(default=0)),
                ("credits_charged", models.BigIntegerField(default=0)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("settled_at", models.DateTimeField(blank=True, null=True)),
                ("project", models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT,
                                              related_name="owed_charges", to="wallets.project")),
                ("run", models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name="owed_charges",
                                          to="billing.billingrun")),
            ],
            options={
                "ordering": ["-created_at", "-id"],
                "permissions": [("retry_owedcharge", "Can retry owed billing now")],
                "indexes": [models.Index(fields=["status", "next_retry_at"], name="owed_charge_due")],
                "constraints": [
                    models.UniqueConstraint(fields=("run", "first_project_id", "last_project_id"),
                                            name="owed_charge_unique_range"),
                    models.CheckConstraint(condition=models.Q(("last_project_id__gte", models.F("first_project_id"))),
                                           name="owed_charge_range_forward"),
                ],
            },
        ),
        migrations.RunPython(owe_what_partial_runs_failed, migrations.RunPython.noop),
    ]
