"""Celery tasks: training, rescoring (chunked, shared by workers) and one-product refreshes.

Every task acknowledges late, so a message whose worker dies is delivered again, and is safe
to run twice: a run that is no longer queued, or a rescore that is no longer running, is left
alone.
"""

import logging

from celery import group, shared_task
from celery.signals import worker_ready
from django.db import OperationalError
from django.utils import timezone

from .conf import shopguide_settings
from .models import RecommenderModel, TrainingRun
from .rescoring import build_vector_index, encode_chunk, refresh_product, start_rescore
from .training import TrainingError, execute_run, fail_abandoned_runs, is_better_than_active, training_in_progress

logger = logging.getLogger(__name__)

TRAINING_TIME_LIMIT = 3 * 60 * 60
CHUNK_TIME_LIMIT = 15 * 60


@shared_task(name="shopguide.train", bind=True, acks_late=True, soft_time_limit=TRAINING_TIME_LIMIT,
             time_limit=TRAINING_TIME_LIMIT + 60)
def train(self, run_id, activate="if_better"):
    """Train the version requested by queued ``TrainingRun`` ``run_id``; then, when it beats
    the serving version on the same held-out queries (or ``activate`` is "always"), rescore
    the catalogue with it and make it serve."""
    run = TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.QUEUED).first()
    if run is None:
        return None
    try:
        model = execute_run(run, worker=self.request.hostname or "")
    except TrainingError as exc:  # refused (another run is training): recorded on the run
        logger.warning("Training run #%s refused: %s", run_id, exc)
        return None
    if activate == "always" or (activate == "if_better" and is_better_than_active(model)):
        rescore.apply_async(args=[model.pk, True], queue=shopguide_settings.RESCORE_QUEUE)
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


@shared_task(name="shopguide.rescore_chunk", acks_late=True, autoretry_for=(OperationalError,),
             retry_backoff=True, max_retries=3, soft_time_limit=CHUNK_TIME_LIMIT, time_limit=CHUNK_TIME_LIMIT + 60)
def rescore_chunk(rescore_id, index, keys):
    if encode_chunk(rescore_id, index, keys):  # this chunk swapped the new vectors in
        queue = shopguide_settings.RESCORE_QUEUE
        warm_cache.apply_async(queue=queue)
        build_index.apply_async(queue=queue)


@shared_task(name="shopguide.warm_cache", acks_late=True, soft_time_limit=CHUNK_TIME_LIMIT,
             time_limit=CHUNK_TIME_LIMIT + 60)
def warm_cache():
    """Precompute the recommendations of the most searched queries (useful with a cache the
    web processes share: Redis, Memcached or the database)."""
    from .services import warm_cache as warm

    return warm()


@shared_task(name="shopguide.build_index", acks_late=True, time_limit=60 * 60)
def build_index():
    """Rebuild the HNSW index a swap dropped, without blocking readers."""
    return build_vector_index()


@shared_task(name="shopguide.refresh_product", acks_late=True, autoretry_for=(OperationalError,),
             retry_backoff=True, max_retries=3)
def refresh_product_task(key):
    refresh_product(key)


@shared_task(name="shopguide.scheduled_train")
def scheduled_train():
    """Celery beat's retraining: queued unless a run is already queued or running."""
    if training_in_progress():
        return None
    return enqueue_training(activate=shopguide_settings.AUTO_ACTIVATE).pk


def beat_schedule():
    """The Celery beat entries shopguide wants (none unless RETRAIN_EVERY_HOURS is set)."""
    hours = shopguide_settings.RETRAIN_EVERY_HOURS
    if not hours:
        return {}
    return {"shopguide-retrain": {"task": "shopguide.scheduled_train", "schedule": float(hours) * 3600}}


class QueueUnavailable(Exception):
    """The broker could not take the message; nothing was queued."""


def enqueue_training(options=None, user=None, activate="if_better"):
    """Create a queued ``TrainingRun`` and send it to the training queue; return the run.
    When the broker cannot be reached the run is marked failed (so it blocks no later
    request) and ``QueueUnavailable`` says why."""
    run = TrainingRun.objects.create(options=options or {}, started_by=user)
    try:
        result = train.apply_async(args=[run.pk, activate], queue=shopguide_settings.TRAINING_QUEUE,
                                   retry=True, retry_policy={"max_retries": 2, "interval_start": 0.5,
                                                             "interval_step": 0.5})
    except Exception as exc:
        message = f"The task queue cannot be reached ({type(exc).__name__}: {exc}); try again later."
        TrainingRun.objects.filter(pk=run.pk).update(
            status=TrainingRun.Status.FAILED, error=message, finished_at=timezone.now()
        )
        raise QueueUnavailable(message) from exc
    TrainingRun.objects.filter(pk=run.pk).update(task_id=result.id)
    run.task_id = result.id
    return run


@worker_ready.connect
def fail_runs_of_dead_workers(sender=None, **kwargs):
    """A worker that starts again lost whatever it was training when it stopped."""
    hostname = getattr(sender, "hostname", None)
    failed = fail_abandoned_runs(worker=hostname)
    if failed:
        logger.warning("Marked %d training run(s) of a stopped worker as failed.", failed)
