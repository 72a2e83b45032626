"""System checks that name mistakes in the ``SHOPGUIDE`` settings."""

from django.core.checks import Error, Warning, register
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.db import models
from django.utils.module_loading import import_string

from .catalog_source import get_product_model, resolve_field_path
from .conf import DEFAULTS, shopguide_settings


@register()
def check_settings(app_configs=None, **kwargs):
    errors = [
        Warning(
            f'SHOPGUIDE has an unknown key {name!r}; it is ignored.',
            hint="Known keys: " + ", ".join(sorted(DEFAULTS)),
            id="shopguide.W001",
        )
        for name in shopguide_settings.user_settings
        if name not in DEFAULTS
    ]
    try:
        model = get_product_model()
    except ImproperlyConfigured as exc:
        return errors + [Error(str(exc), id="shopguide.E001")]

    text_fields = shopguide_settings.TEXT_FIELDS
    if isinstance(text_fields, str) or not text_fields:
        errors.append(Error(
            'SHOPGUIDE["TEXT_FIELDS"] must be a non-empty list of field names.',
            id="shopguide.E002",
        ))
        text_fields = ()
    for path in text_fields:
        try:
            resolve_field_path(model, path)
        except FieldDoesNotExist as exc:
            errors.append(Error(
                f'SHOPGUIDE["TEXT_FIELDS"] names {path!r}, which {model._meta.label} does not have ({exc}).',
                id="shopguide.E002",
            ))

    availability = shopguide_settings.AVAILABILITY_FIELD
    if availability:
        try:
            field = resolve_field_path(model, availability)
        except FieldDoesNotExist as exc:
            errors.append(Error(
                f'SHOPGUIDE["AVAILABILITY_FIELD"] names {availability!r}, which '
                f"{model._meta.label} does not have ({exc}).",
                id="shopguide.E003",
            ))
        else:
            if not isinstance(field, models.BooleanField):
                errors.append(Error(
                    f'SHOPGUIDE["AVAILABILITY_FIELD"] {availability!r} must be a BooleanField.',
                    id="shopguide.E003",
                ))

    try:
        import_string(shopguide_settings.CATALOG_SOURCE)
    except ImportError as exc:
        errors.append(Error(
            f'SHOPGUIDE["CATALOG_SOURCE"] cannot be imported: {exc}', id="shopguide.E004"
        ))
    return errors
