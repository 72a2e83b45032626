from django.apps import AppConfig


class ShopguideConfig(AppConfig):
    name = "shopguide"
    verbose_name = "Shopping guide"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from django.core.exceptions import ImproperlyConfigured

        from . import (
            checks,  # noqa: F401  (registers the system checks)
            receivers,
            rules,
        )

        rules.connect()

        try:
            receivers.connect()
        except ImproperlyConfigured:
            pass  # reported by the system checks (shopguide.E001)
