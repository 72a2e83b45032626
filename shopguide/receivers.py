"""Keep the serving vectors in step with the shop's products: a saved or deleted product is
re-encoded or dropped by a Celery task once the transaction commits."""

import logging
from functools import partial

from django.db import transaction
from django.db.models.signals import post_delete, post_save

from .catalog_source import get_catalog_source, get_product_model
from .conf import shopguide_settings

logger = logging.getLogger(__name__)


def enqueue_refresh(key):
    from .tasks import refresh_product_task

    try:
        refresh_product_task.apply_async(args=[key], queue=shopguide_settings.RESCORE_QUEUE, retry=False)
    except Exception:  # the broker is down: the next full rescore picks the change up
        logger.warning("Could not queue the refresh of product %s; it waits for the next rescore.", key, exc_info=True)


def product_changed(sender, instance, **kwargs):
    if shopguide_settings.RESCORE_ON_SAVE:
        transaction.on_commit(partial(enqueue_refresh, get_catalog_source().key(instance)))


def connect():
    model = get_product_model()
    post_save.connect(product_changed, sender=model, dispatch_uid="shopguide_product_saved")
    post_delete.connect(product_changed, sender=model, dispatch_uid="shopguide_product_deleted")
