"""Settings of a minimal host shop: its own product model (store.Item), its own Celery app,
shopguide configured only through its documented settings. Nothing of the demo's catalog
or config is imported."""

import os
from urllib.parse import urlsplit

SECRET_KEY = "host-shop-test-key"
DEBUG = False
ALLOWED_HOSTS = ["testserver", "localhost"]
USE_TZ = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.postgres",
    "rest_framework",
    "shopguide",
    "tests.host_shop.store",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
ROOT_URLCONF = "tests.host_shop.urls"
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

url = urlsplit(os.environ["HOST_SHOP_DATABASE_URL"])
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": url.path.lstrip("/"),
        "USER": url.username or "",
        "PASSWORD": url.password or "",
        "HOST": dict(part.split("=", 1) for part in url.query.split("&") if "=" in part).get(
            "host", url.hostname or ""
        ),
        "PORT": url.port or "",
    }
}
CACHES = {  # shared by its processes, as the guide asks
    "default": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "store_cache"},
    "throttle": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "throttle"},
}
MEDIA_ROOT = os.environ["HOST_SHOP_MEDIA_ROOT"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
    # Versions in a storage without local paths, as in a cloud bucket shared by every machine.
    "shopguide_versions": {
        "BACKEND": "tests.host_shop.store.storage.SharedStorage",
        "OPTIONS": {"location": os.environ["HOST_SHOP_BUCKET"]},
    },
}

CELERY_BROKER_URL = os.environ["HOST_SHOP_BROKER_URL"]
CELERY_TASK_DEFAULT_QUEUE = "host_celery"  # apart from the demo's queues on the same broker

SHOPGUIDE = {
    "PRODUCT_MODEL": "store.Item",
    "TEXT_FIELDS": ["name", "department__name", "blurb"],
    "AVAILABILITY_FIELD": "active",
    "EXTERNAL_ID_FIELD": "sku",
    "CATALOG_SOURCE": "tests.host_shop.store.presentation.StoreSource",
    "TRAINING_QUEUE": "host_training",
    "RESCORE_QUEUE": "host_rescore",
    "THROTTLE_CACHE": "throttle",
    "RETRAIN_EVERY_HOURS": 12,
    "TORCH_THREADS": 1,
    "VERSIONS_CACHE": os.path.join(os.environ["HOST_SHOP_BUCKET"] + "-copies", str(os.getpid())),  # per process
}
