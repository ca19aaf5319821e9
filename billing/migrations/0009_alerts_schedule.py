from django.db import migrations

ALERTS_SWEEP = "billing: threshold alerts sweep"


def schedule(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    every_5_minutes, _ = IntervalSchedule.objects.get_or_create(every=5, period="minutes")
    PeriodicTask.objects.get_or_create(name=ALERTS_SWEEP, defaults={
        "task": "billing.tasks.alerts_sweep", "interval": every_5_minutes, "enabled": True,
        "description": "Evaluates every threshold alert (runway follows time passing) and sends unsent alert emails."})
    from django.utils import timezone

    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def unschedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=ALERTS_SWEEP).delete()


class Migration(migrations.Migration):
    dependencies = [("billing", "0008_threshold_alerts"), ("django_celery_beat", "0019_alter_periodictasks_options")]
    operations = [migrations.RunPython(schedule, unschedule)]
