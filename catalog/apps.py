from django.apps import AppConfig


class CatalogConfig(AppConfig):
    name = "catalog"
    verbose_name = "Demo shop catalogue"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from shopguide.signals import user_forgotten

        user_forgotten.connect(forget_search_history, dispatch_uid="catalog_forget_search_history")


def forget_search_history(sender, user, session_keys, **kwargs):
    """The demo shop's own part of forgetting a shopper: their search log."""
    from .models import SearchLog

    SearchLog.objects.filter(session_key__in=session_keys).delete()
