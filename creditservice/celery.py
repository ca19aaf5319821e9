"""The Celery app: tasks live in each app's tasks.py; schedules live in django-celery-beat's tables."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "creditservice.settings")

app = Celery("creditservice")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
