"""System checks that name mistakes in the ``SHOPGUIDE`` settings."""

import json
from pathlib import Path

from django.apps import apps
from django.conf import settings
from django.core.checks import Error, Warning, register
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.db import models
from django.utils.module_loading import import_string

from .catalog_source import get_product_model, resolve_field_path
from .conf import DEFAULTS, shopguide_settings
from .embeddings import DIMENSIONS
from .ml.precision import PRECISIONS


def missing_field(model, setting, path, error_id):
    """An Error when ``path`` is not a field (through relations) of ``model``, else None."""
    try:
        resolve_field_path(model, path)
    except FieldDoesNotExist as exc:
        return Error(
            f'SHOPGUIDE["{setting}"] names {path!r}, which {model._meta.label} does not have ({exc}).',
            id=error_id,
        )
    return None


REQUIRED_APPS = ("django.contrib.postgres", "rest_framework")
AUTO_ACTIVATE_CHOICES = ("if_better", "always", "never", "online")


def whole_number(value, least):
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def positive_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0


def rate(value):
    """A DRF rate such as "120/min"."""
    number, _, period = str(value).partition("/")
    return isinstance(value, str) and number.isdigit() and period[:1] in ("s", "m", "h", "d")


def value_check(name, valid, expected, error_id, none_allowed=False):
    """A check that ``SHOPGUIDE[name]`` is valid: ``expected`` says what it should be."""

    def check():
        value = getattr(shopguide_settings, name)
        if (value is None and none_allowed) or valid(value):
            return []
        wanted = expected() if callable(expected) else expected
        return [Error(f'SHOPGUIDE["{name}"] is {value!r}; use {wanted}.', id=error_id)]

    return check


VALUE_CHECKS = [
    value_check("PRECISION", lambda v: v in PRECISIONS, f"one of {', '.join(map(repr, PRECISIONS))}", "shopguide.E006"),
    value_check(
        "PROXY_COUNT", lambda v: whole_number(v, 0), "the number of your own proxies (0 or more)", "shopguide.E007"
    ),
    value_check("MIN_SHOPPERS", lambda v: whole_number(v, 1), "a whole number of 1 or more", "shopguide.E009"),
    value_check(
        "SHOPPER_TOKEN_MAX_AGE", lambda v: whole_number(v, 1), "seconds, a whole number of 1 or more", "shopguide.E010"
    ),
    value_check(
        "CACHE_TIMEOUT", lambda v: whole_number(v, 1), "seconds, a whole number of 1 or more", "shopguide.E012"
    ),
    value_check("RESCORE_CHUNK_SIZE", lambda v: whole_number(v, 1), "a whole number of 1 or more", "shopguide.E012"),
    value_check("WARM_QUERIES", lambda v: whole_number(v, 0), "a whole number of 0 or more", "shopguide.E012"),
    value_check("KEEP_VERSIONS", lambda v: whole_number(v, 0), "a whole number of 0 or more", "shopguide.E012"),
    value_check(
        "TORCH_THREADS", lambda v: whole_number(v, 1), "a whole number of 1 or more, or None", "shopguide.E012", True
    ),
    value_check("QUERY_ENCODER", lambda v: v in ("auto", "torch"), "'auto' or 'torch'", "shopguide.E012"),
    value_check(
        "RERANK_BUDGET_MS", lambda v: positive_number(v) or v == 0, "milliseconds, 0 or more", "shopguide.E012"
    ),
    value_check("RETRAIN_EVERY_HOURS", positive_number, "hours, more than 0, or None", "shopguide.E012", True),
    value_check("RECONCILE_EVERY_MINUTES", positive_number, "minutes, more than 0, or None", "shopguide.E012", True),
    value_check("EVENTS_RATE", rate, 'a rate such as "120/min" or None', "shopguide.E012", True),
    value_check("RESCORE_ON_SAVE", lambda v: isinstance(v, bool), "True or False", "shopguide.E012"),
    value_check(
        "AUTO_ACTIVATE",
        lambda v: v in AUTO_ACTIVATE_CHOICES,
        f"one of {', '.join(map(repr, AUTO_ACTIVATE_CHOICES))}",
        "shopguide.E012",
    ),
    value_check(
        "ONLINE_SHARE",
        lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1,
        "a share of shoppers from 0 to 1",
        "shopguide.E012",
    ),
    value_check("ONLINE_MIN_DECIDED", lambda v: whole_number(v, 1), "a whole number of 1 or more", "shopguide.E012"),
    value_check(
        "VERSIONS_STORAGE",
        lambda v: v == DEFAULTS["VERSIONS_STORAGE"] or v in settings.STORAGES,
        lambda: f"an alias of STORAGES ({', '.join(map(repr, settings.STORAGES))})",
        "shopguide.E014",
    ),
    value_check(
        "VERSIONS_CACHE", lambda v: isinstance(v, str) and v != "", "a folder, or None", "shopguide.E012", True
    ),
    value_check(
        "THROTTLE_CACHE",
        lambda v: v in settings.CACHES,
        lambda: f"an alias of CACHES ({', '.join(map(repr, settings.CACHES))})",
        "shopguide.E008",
    ),
]


def check_base_model():
    """``BASE_MODEL`` must be a folder of a transformers encoder whose vectors have the size of
    the stored vector columns (``embeddings.DIMENSIONS``)."""
    folder = shopguide_settings.BASE_MODEL
    if folder is None:
        return []
    config = Path(folder) / "config.json"
    try:
        size = json.loads(config.read_text()).get("hidden_size")
    except (OSError, ValueError) as exc:
        return [Error(f'SHOPGUIDE["BASE_MODEL"] {folder!r} is no model folder: {exc}', id="shopguide.E013")]
    if size != DIMENSIONS:
        return [
            Error(
                f'SHOPGUIDE["BASE_MODEL"] {folder!r} makes vectors of {size} dimensions; shopguide stores {DIMENSIONS}.',
                hint="Use a sentence encoder of 384 dimensions (the MiniLM family), or None for the bundled one.",
                id="shopguide.E013",
            )
        ]
    return []


def check_deployment():
    """Warnings for a project whose processes would not share what shopguide keeps."""
    warnings = []
    if not settings.MEDIA_ROOT and shopguide_settings.VERSIONS_STORAGE not in settings.STORAGES:
        warnings.append(
            Warning(
                "Trained versions would go to shopguide-versions/ in each process's working directory "
                "(MEDIA_ROOT is empty), so workers and web processes started elsewhere would not find them.",
                hint=f'Set MEDIA_ROOT, or STORAGES["{shopguide_settings.VERSIONS_STORAGE}"].',
                id="shopguide.W002",
            )
        )
    backend = settings.CACHES.get("default", {}).get("BACKEND", "")
    if backend.endswith(("LocMemCache", "DummyCache")):
        warnings.append(
            Warning(
                "The default cache is not shared between processes: the answers workers precompute after a "
                "rescore never reach the web processes.",
                hint="Use Redis, Memcached or a database table (createcachetable) as CACHES['default'].",
                id="shopguide.W003",
            )
        )
    if shopguide_settings.AUTO_ACTIVATE == "online" and shopguide_settings.ONLINE_SHARE == 0:
        warnings.append(
            Warning(
                'AUTO_ACTIVATE is "online" but ONLINE_SHARE is 0: no shopper is shown a new version, so none is '
                "ever activated.",
                hint='Set SHOPGUIDE["ONLINE_SHARE"] above 0 (0.1: one shopper in ten), or another AUTO_ACTIVATE.',
                id="shopguide.W004",
            )
        )
    return warnings


@register()
def check_settings(app_configs=None, **kwargs):
    errors = [
        Warning(
            f"SHOPGUIDE has an unknown key {name!r}; it is ignored.",
            hint="Known keys: " + ", ".join(sorted(DEFAULTS)),
            id="shopguide.W001",
        )
        for name in shopguide_settings.user_settings
        if name not in DEFAULTS
    ]
    errors += [error for check in VALUE_CHECKS for error in check()] + check_base_model() + check_deployment()
    if not settings.USE_TZ:
        errors.append(
            Error(
                "shopguide needs USE_TZ = True: events, versions and the search insights' days are stored as "
                "moments in time.",
                id="shopguide.E015",
            )
        )
    missing = [app for app in REQUIRED_APPS if not apps.is_installed(app)]
    if missing:
        errors.append(
            Error(
                f"shopguide needs {', '.join(missing)} in INSTALLED_APPS.",
                hint="INSTALLED_APPS = [..., 'django.contrib.postgres', 'rest_framework', 'shopguide']",
                id="shopguide.E011",
            )
        )
    try:
        model = get_product_model()
    except ImproperlyConfigured as exc:
        return errors + [Error(str(exc), id="shopguide.E001")]

    text_fields = shopguide_settings.TEXT_FIELDS
    if isinstance(text_fields, str) or not text_fields:
        errors.append(
            Error(
                'SHOPGUIDE["TEXT_FIELDS"] must be a non-empty list of field names.',
                id="shopguide.E002",
            )
        )
        text_fields = ()
    errors += filter(None, (missing_field(model, "TEXT_FIELDS", path, "shopguide.E002") for path in text_fields))

    availability = shopguide_settings.AVAILABILITY_FIELD
    if availability:
        error = missing_field(model, "AVAILABILITY_FIELD", availability, "shopguide.E003")
        if error is None and not isinstance(resolve_field_path(model, availability), models.BooleanField):
            error = Error(
                f'SHOPGUIDE["AVAILABILITY_FIELD"] {availability!r} must be a BooleanField.', id="shopguide.E003"
            )
        errors += filter(None, [error])

    external_id = shopguide_settings.EXTERNAL_ID_FIELD
    if external_id:
        errors += filter(None, [missing_field(model, "EXTERNAL_ID_FIELD", external_id, "shopguide.E005")])

    try:
        import_string(shopguide_settings.CATALOG_SOURCE)
    except ImportError as exc:
        errors.append(Error(f'SHOPGUIDE["CATALOG_SOURCE"] cannot be imported: {exc}', id="shopguide.E004"))
    return errors
