"""Celery tasks: training, rescoring (chunked, shared by workers) and one-product refreshes.

Every task acknowledges late, so a message whose worker dies is delivered again, and is safe
to run twice: a run that is no longer queued, or a rescore that is no longer running, is left
alone.
"""

import datetime
import logging

from celery import group, shared_task
from celery.signals import beat_init, worker_ready
from django.db import OperationalError
from django.utils import timezone

from . import insights, operations
from .conf import shopguide_settings
from .models import RecommenderModel, TrainingRun
from .rescoring import build_vector_index, encode_chunk, refresh_product, refresh_products, start_rescore

logger = logging.getLogger(__name__)

TRAINING_TIME_LIMIT = 3 * 60 * 60
CHUNK_TIME_LIMIT = 15 * 60
# Work on product vectors: tried again when the database was briefly unreachable.
VECTOR_WORK = {"acks_late": True, "autoretry_for": (OperationalError,), "retry_backoff": True, "max_retries": 3}
CHUNK_LIMITS = {"soft_time_limit": CHUNK_TIME_LIMIT, "time_limit": CHUNK_TIME_LIMIT + 60}


@shared_task(
    name="shopguide.train",
    bind=True,
    acks_late=True,
    soft_time_limit=TRAINING_TIME_LIMIT,
    time_limit=TRAINING_TIME_LIMIT + 60,
)
def train(self, run_id, activate="if_better"):
    """Train the version requested by queued ``TrainingRun`` ``run_id``; then let the
    activation gate decide (``activate``: an ``AUTO_ACTIVATE`` value) whether to rescore the
    catalogue with it and make it serve (``operations.after_training``)."""
    from .training import TrainingError, execute_run  # torch: imported where a run trains, not where it is sent

    run = TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.QUEUED).first()
    if run is None:  # cancelled, or delivered twice
        return None
    try:
        model = execute_run(run, worker=self.request.hostname or "")
    except TrainingError as exc:  # refused (another run is training): recorded on the run
        logger.warning("Training run #%s refused: %s", run_id, exc)
        return None
    if model is None:  # cancelled while training
        return None
    operations.after_training(model, activate)
    operations.prune()
    return model.pk


@shared_task(name="shopguide.rescore", acks_late=True)
def rescore(model_id, activate=False, reuse_vectors=True):
    """Encode the available catalogue with a version, in chunks spread over the workers."""
    model = RecommenderModel.objects.get(pk=model_id)
    job, chunks = start_rescore(model, activate, reuse_vectors)
    group(rescore_chunk.s(job.pk, index, keys) for index, keys in enumerate(chunks)).apply_async(
        queue=shopguide_settings.RESCORE_QUEUE
    )
    return job.pk


@shared_task(name="shopguide.rescore_chunk", **VECTOR_WORK, **CHUNK_LIMITS)
def rescore_chunk(rescore_id, index, keys):
    if encode_chunk(rescore_id, index, keys):  # this chunk swapped the new vectors in
        queue = shopguide_settings.RESCORE_QUEUE
        warm_cache.apply_async(queue=queue)
        build_index.apply_async(queue=queue)


@shared_task(name="shopguide.warm_cache", acks_late=True, **CHUNK_LIMITS)
def warm_cache():
    """Precompute the recommendations of the most searched queries (useful with a cache the
    web processes share: Redis, Memcached or the database)."""
    from .services import warm_cache as warm

    return warm()


@shared_task(name="shopguide.build_index", acks_late=True, time_limit=60 * 60)
def build_index():
    """Rebuild the HNSW index a swap dropped, without blocking readers."""
    return build_vector_index()


@shared_task(name="shopguide.refresh_product", **VECTOR_WORK)
def refresh_product_task(key):
    refresh_product(key)


@shared_task(name="shopguide.refresh_products", **VECTOR_WORK, **CHUNK_LIMITS)
def refresh_products_task(keys):
    """Re-encode or drop one chunk of products (``operations.refresh_products``)."""
    return refresh_products(keys)


@shared_task(name="shopguide.reconcile", acks_late=True)
def reconcile():
    """Celery beat's reconciliation (``RECONCILE_EVERY_MINUTES``): refresh the products whose
    text or availability changed without a signal."""
    return operations.reconcile()


@shared_task(name="shopguide.scheduled_train")
def scheduled_train():
    """Celery beat's retraining: queued unless a run is already queued or running."""
    try:
        return operations.train().pk
    except operations.OperationError as exc:  # a run is queued or running, or the broker is down
        logger.info("Scheduled training skipped: %s", exc)
        return None


@shared_task(name="shopguide.roll_up_insights", acks_late=True)
def roll_up_insights():
    """Celery beat's summing of yesterday's and today's events for the search insights, so
    that the page seldom has to; return how many days were summed."""
    today = timezone.localdate()
    return insights.roll_up_period(today - datetime.timedelta(days=1), today)


@shared_task(name="shopguide.decide_comparison", acks_late=True)
def decide_comparison():
    """Celery beat's look at the running online comparison (every 15 minutes): ended once
    decided, its candidate activated when it won and was started to be."""
    comparison = operations.decide_comparison()
    return None if comparison is None else comparison.status


def beat_schedule():
    """The Celery beat entries shopguide wants: the reconciliation (``RECONCILE_EVERY_MINUTES``),
    retraining (``RETRAIN_EVERY_HOURS``, off by default), the insights' hourly sums and the
    online comparison's verdict."""
    entries = {
        "shopguide-insights": {"task": "shopguide.roll_up_insights", "schedule": 3600.0},
        "shopguide-online": {"task": "shopguide.decide_comparison", "schedule": 900.0},
    }
    minutes, hours = shopguide_settings.RECONCILE_EVERY_MINUTES, shopguide_settings.RETRAIN_EVERY_HOURS
    if minutes:
        entries["shopguide-reconcile"] = {"task": "shopguide.reconcile", "schedule": float(minutes) * 60}
    if hours:
        entries["shopguide-retrain"] = {"task": "shopguide.scheduled_train", "schedule": float(hours) * 3600}
    return entries


@beat_init.connect
def add_beat_schedule(sender=None, **kwargs):
    """``celery beat`` of whatever Celery app the shop runs gets shopguide's entries, once its
    tasks are discovered (``app.autodiscover_tasks()``, which imports this module): nothing
    to copy into the shop's own Celery module."""
    entries = beat_schedule()
    if entries:
        sender.scheduler.update_from_dict(entries)
        logger.info("shopguide's beat entries: %s", ", ".join(entries))


@worker_ready.connect
def fail_runs_of_dead_workers(sender=None, **kwargs):
    """A worker that starts again lost whatever it was training when it stopped."""
    from .training import fail_abandoned_runs

    hostname = getattr(sender, "hostname", None)
    failed = fail_abandoned_runs(worker=hostname)
    if failed:
        logger.warning("Marked %d training run(s) of a stopped worker as failed.", failed)
