from django.db import migrations

# name → (task, schedule); the hourly run starts ten minutes past the hour, after the collection of
# the window that just closed (metering collects every five minutes).
HOURLY_RUN = "billing: bill closed windows"
SWEEP = "billing: lifecycle sweep (grace expiry)"
WEBHOOKS = "billing: outbound webhook retries"


def schedule(apps, schema_editor):
    CrontabSchedule = apps.get_model("django_celery_beat", "CrontabSchedule")
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTasks = apps.get_model("django_celery_beat", "PeriodicTasks")
    hourly, _ = CrontabSchedule.objects.get_or_create(
        minute="10", hour="*", day_of_week="*", day_of_month="*", month_of_year="*", timezone="UTC")
    every_5_minutes, _ = IntervalSchedule.objects.get_or_create(every=5, period="minutes")
    every_minute, _ = IntervalSchedule.objects.get_or_create(every=1, period="minutes")
    PeriodicTask.objects.get_or_create(name=HOURLY_RUN, defaults={
        "task": "billing.tasks.billing_run_due", "crontab": hourly, "enabled": True,
        "description": "Bills every closed window not yet billed (oldest first), with late adjustments."})
    PeriodicTask.objects.get_or_create(name=SWEEP, defaults={
        "task": "billing.tasks.lifecycle_sweep", "interval": every_5_minutes, "enabled": True,
        "description": "Suspends projects whose grace ended unfunded; reactivates funded ones."})
    PeriodicTask.objects.get_or_create(name=WEBHOOKS, defaults={
        "task": "billing.tasks.webhook_deliveries_due", "interval": every_minute, "enabled": True,
        "description": "Sends outbound webhook deliveries whose retry is due."})
    from django.utils import timezone

    PeriodicTasks.objects.update_or_create(ident=1, defaults={"last_update": timezone.now()})


def unschedule(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name__in=[HOURLY_RUN, SWEEP, WEBHOOKS]).delete()


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial"), ("django_celery_beat", "0019_alter_periodictasks_options")]
    operations = [migrations.RunPython(schedule, unschedule)]
