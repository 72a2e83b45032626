"""The host shop's own Celery app, written as Celery's Django guide writes one: nothing of
shopguide in it."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.host_shop.settings")

app = Celery("host_shop")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
