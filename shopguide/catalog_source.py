"""The one door to the host shop's products.

shopguide never imports the shop's code: it reads the product model named in
``SHOPGUIDE["PRODUCT_MODEL"]`` through a ``CatalogSource``. A shop that stores its catalogue
differently subclasses ``CatalogSource`` and names the subclass in
``SHOPGUIDE["CATALOG_SOURCE"]``.
"""

import functools

from django.apps import apps
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.core.signals import setting_changed
from django.utils.html import strip_tags
from django.utils.module_loading import import_string

from .conf import shopguide_settings

TEXT_SEPARATOR = " | "


def resolve_field_path(model, path):
    """Return the model field at the end of a ``related__field`` path.

    Raises ``FieldDoesNotExist`` naming the part of the path that is wrong.
    """
    parts = path.split("__")
    for depth, name in enumerate(parts):
        field = model._meta.get_field(name)
        if depth < len(parts) - 1:
            if not field.is_relation or field.related_model is None:
                raise FieldDoesNotExist(f"{model.__name__}.{name} is not a relation")
            model = field.related_model
    return field


def get_product_model():
    label = shopguide_settings.PRODUCT_MODEL
    if not label:
        raise ImproperlyConfigured(
            'SHOPGUIDE["PRODUCT_MODEL"] is not set: name your product model, e.g. "shop.Product".'
        )
    try:
        return apps.get_model(label, require_ready=False)
    except (ValueError, LookupError) as exc:
        raise ImproperlyConfigured(
            f'SHOPGUIDE["PRODUCT_MODEL"] = {label!r} is not an installed model ("app_label.Model").'
        ) from exc


class CatalogSource:
    """Reads product keys, texts and availability from the shop's product model, and presents
    products (title, URL, price, image, the id the API speaks). Subclass it to change either:
    a price in your own format, an image from a related model, texts from elsewhere."""

    def __init__(self, model, text_fields, availability_field=None, external_id_field=None):
        self.model = model
        self.text_fields = tuple(text_fields)
        self.availability_field = availability_field
        self.external_id_field = external_id_field or "pk"

    def all_products(self):
        return self.model._default_manager.all()

    def available_products(self):
        products = self.all_products()
        if self.availability_field:
            products = products.filter(**{self.availability_field: True})
        return products

    def key(self, product):
        """The string shopguide stores to refer to a product (its primary key)."""
        return self.key_for_pk(product.pk)

    @staticmethod
    def key_for_pk(pk):
        return str(pk)

    def text_from_values(self, values):
        """Join a product's text fields into one plain-text string (HTML removed)."""
        parts = (strip_tags(str(values[name])).strip() for name in self.text_fields if values[name])
        return TEXT_SEPARATOR.join(part for part in parts if part)

    def iter_texts(self, queryset=None, chunk_size=2000):
        """Yield ``(key, text)`` for each product of ``queryset`` (default: available ones)."""
        if queryset is None:
            queryset = self.available_products()
        rows = queryset.order_by("pk").values("pk", *self.text_fields)
        for values in rows.iterator(chunk_size=chunk_size):
            yield self.key_for_pk(values["pk"]), self.text_from_values(values)

    def keys_for_external_ids(self, external_ids):
        """``{external id: key}`` for the ids that name a product (any availability)."""
        external_ids = {str(external_id) for external_id in external_ids}
        rows = self.all_products().filter(**{f"{self.external_id_field}__in": external_ids})
        return {
            str(external_id): self.key_for_pk(pk) for external_id, pk in rows.values_list(self.external_id_field, "pk")
        }

    # Presentation: what a strip, the API and the reasons show of a product.

    def title(self, product):
        return str(product)

    def url(self, product):
        """The product page (``get_absolute_url()``), or None."""
        return product.get_absolute_url() if hasattr(product, "get_absolute_url") else None

    def price(self, product):
        """The price as the shop shows it, or None. By default the ``price`` attribute as it
        is, with no currency: override to format it (``"€12,50"``)."""
        value = getattr(product, "price", None)
        return None if value is None or value == "" else str(value)

    def image_url(self, product):
        """A URL of the product's image (an ``image_url`` attribute or method), or None."""
        value = getattr(product, "image_url", None)
        return (value() if callable(value) else value) or None

    def public_id(self, product):
        """The id the API and the pages' tracking speak: the external id (``EXTERNAL_ID_FIELD``)
        where the shop has one, else the key."""
        if self.external_id_field == "pk":
            return self.key(product)
        return str(getattr(product, self.external_id_field))

    def keys_for_public_ids(self, public_ids):
        """``{public id: key}`` for the ids that name a product (any availability)."""
        if self.external_id_field == "pk":
            return {key: key for key in self.products_by_key(public_ids, available_only=False)}
        return self.keys_for_external_ids(public_ids)

    def products_by_key(self, keys, *, available_only=True):
        """Return ``{key: product}`` for the given keys, skipping missing products."""
        products = self.available_products() if available_only else self.all_products()
        pk_field = self.model._meta.pk
        pks = []
        for key in keys:
            try:
                pks.append(pk_field.to_python(key))
            except Exception:  # a key that can never be a primary key of this model
                continue
        return {self.key(product): product for product in products.filter(pk__in=pks).order_by()}


@functools.cache
def get_catalog_source():
    """The configured ``CatalogSource`` (cached; reset when ``SHOPGUIDE`` changes)."""
    source_class = import_string(shopguide_settings.CATALOG_SOURCE)
    return source_class(
        get_product_model(),
        shopguide_settings.TEXT_FIELDS,
        shopguide_settings.AVAILABILITY_FIELD,
        shopguide_settings.EXTERNAL_ID_FIELD,
    )


def _forget_catalog_source(*, setting, **kwargs):
    if setting == "SHOPGUIDE":
        get_catalog_source.cache_clear()


setting_changed.connect(_forget_catalog_source, dispatch_uid="shopguide.catalog_source.forget")
