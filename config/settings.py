"""Settings of the demo shop. Everything a deployment changes comes from the environment.

DATABASE_URL       PostgreSQL to use; unset: an embedded PostgreSQL 16 under var/
CELERY_BROKER_URL  Redis or RabbitMQ broker; unset: an embedded Redis under var/
SECRET_KEY, DEBUG, ALLOWED_HOSTS, MEDIA_ROOT, TORCH_THREADS, QUERY_ENCODER, CACHE_KEY_PREFIX
HTTPS              "1" behind HTTPS: secure cookies, redirect to HTTPS, HSTS (HSTS_SECONDS, default a year;
                   HSTS_INCLUDE_SUBDOMAINS, HSTS_PRELOAD: "1" to opt in)
PROXY_COUNT        proxies of yours in front of the server (the events throttle's client address)
"""

import os
from pathlib import Path

from . import embedded
from .database_url import parse_database_url

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name, default):
    return os.environ.get(name, str(default)).strip().lower() in {"1", "true", "yes", "on"}


DEBUG = env_bool("DEBUG", True)
SECRET_KEY = os.environ.get("SECRET_KEY", "")
if not SECRET_KEY:
    if not DEBUG:
        raise RuntimeError("Set SECRET_KEY when DEBUG is off.")
    SECRET_KEY = "insecure-demo-key-only-for-local-development"
ALLOWED_HOSTS = os.environ.get("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver").split(",")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "shopguide",
    "catalog",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",  # static files, also with DEBUG off
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "shopguide.middleware.DatabaseUnavailableMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": parse_database_url(os.environ.get("DATABASE_URL") or embedded.postgres_url()),
}
DATABASES["default"]["CONN_MAX_AGE"] = int(os.environ.get("CONN_MAX_AGE", "60"))

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "shopguide demo shop API",
    "DESCRIPTION": "Recommendations for a search, shopper events, and (staff) model versions and training runs.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI from the drf-spectacular-sidecar package: the docs page needs no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

# A cache every process shares (here: a PostgreSQL table, made by the catalog app's migration), so
# the recommendations a Celery worker precomputes after a rescore reach the web processes.
# The database backend counts its rows on every write: keep the table small (measured: with
# 20,000 rows an uncached recommendation took 9 ms longer). A shop with Redis uses RedisCache.
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": "shopguide_cache",
        "KEY_PREFIX": os.environ.get("CACHE_KEY_PREFIX", ""),  # sites sharing the table keep apart
        "OPTIONS": {"MAX_ENTRIES": 3000, "CULL_FREQUENCY": 3},
    },
    # The events throttle's counters, apart: many clients cannot cull recommendations out.
    "throttle": {
        "BACKEND": "django.core.cache.backends.db.DatabaseCache",
        "LOCATION": "shopguide_throttle_cache",
        "OPTIONS": {"MAX_ENTRIES": 10000, "CULL_FREQUENCY": 3},
    },
}

# Behind HTTPS (HTTPS=1): cookies only over HTTPS, plain HTTP redirected, browsers told to keep
# to HTTPS (HSTS). The proxy that ends TLS must set X-Forwarded-Proto.
if env_bool("HTTPS", False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = True
    SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = int(os.environ.get("HSTS_SECONDS", 365 * 24 * 3600))
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("HSTS_INCLUDE_SUBDOMAINS", False)
    SECURE_HSTS_PRELOAD = env_bool("HSTS_PRELOAD", False)

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "var" / "static"
# WhiteNoise serves static files from the web process: what `collectstatic` put in STATIC_ROOT
# (compressed, cached for long), and before that straight from the apps' static folders, so
# the tracking script, the admin and the API docs work with DEBUG off without a hidden step.
WHITENOISE_USE_FINDERS = True
MEDIA_URL = "media/"
MEDIA_ROOT = Path(os.environ.get("MEDIA_ROOT", BASE_DIR / "var" / "media"))

# Celery: the broker comes from CELERY_BROKER_URL, or the embedded Redis (see config/celery.py).
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL")
CELERY_RESULT_BACKEND = os.environ.get("CELERY_RESULT_BACKEND")
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_REJECT_ON_WORKER_LOST = True

SHOPGUIDE = {
    "PRODUCT_MODEL": "catalog.Product",
    "TEXT_FIELDS": ["title", "category__name", "brand__name", "description"],
    "AVAILABILITY_FIELD": "in_stock",
    "EXTERNAL_ID_FIELD": "external_id",
    "CATALOG_SOURCE": "catalog.shopguide_source.DemoCatalogSource",  # prices shown in dollars
    "THROTTLE_CACHE": "throttle",
    "PROXY_COUNT": int(os.environ.get("PROXY_COUNT", 0)),
    "TORCH_THREADS": int(os.environ["TORCH_THREADS"]) if os.environ.get("TORCH_THREADS") else None,
    "QUERY_ENCODER": os.environ.get("QUERY_ENCODER", "auto"),
    # "none" lifts the per-client limit on posted events (load tests from one address).
    "EVENTS_RATE": None
    if os.environ.get("EVENTS_RATE", "").lower() == "none"
    else os.environ.get("EVENTS_RATE", "120/min"),
}

# shopguide's messages and every server error (Django's request logger) go to the console.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {
        "shopguide": {"handlers": ["console"], "level": "INFO"},
        "django.request": {"handlers": ["console"], "level": "ERROR"},
    },
}
