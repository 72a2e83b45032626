"""System checks that name mistakes in the ``SHOPGUIDE`` settings."""

from django.conf import settings
from django.core.checks import Error, Warning, register
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.db import models
from django.utils.module_loading import import_string

from .catalog_source import get_product_model, resolve_field_path
from .conf import DEFAULTS, shopguide_settings
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
    if shopguide_settings.PRECISION not in PRECISIONS:
        errors.append(
            Error(
                f'SHOPGUIDE["PRECISION"] is {shopguide_settings.PRECISION!r}; use one of {", ".join(map(repr, PRECISIONS))}.',
                id="shopguide.E006",
            )
        )
    proxies = shopguide_settings.PROXY_COUNT
    if not isinstance(proxies, int) or isinstance(proxies, bool) or proxies < 0:
        errors.append(
            Error(
                f'SHOPGUIDE["PROXY_COUNT"] is {proxies!r}; use the number of your own proxies (0 or more).',
                id="shopguide.E007",
            )
        )
    for name, error_id in (("MIN_SHOPPERS", "shopguide.E009"), ("SHOPPER_TOKEN_MAX_AGE", "shopguide.E010")):
        value = getattr(shopguide_settings, name)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            errors.append(Error(f'SHOPGUIDE["{name}"] is {value!r}; use a whole number of 1 or more.', id=error_id))
    if shopguide_settings.THROTTLE_CACHE not in settings.CACHES:
        errors.append(
            Error(
                f'SHOPGUIDE["THROTTLE_CACHE"] is {shopguide_settings.THROTTLE_CACHE!r}, which is not '
                f"an alias of CACHES ({', '.join(map(repr, settings.CACHES))}).",
                id="shopguide.E008",
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
