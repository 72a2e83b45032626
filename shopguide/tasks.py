"""Celery tasks. Each is safe to run twice for the same message (acks_late redelivery)."""

from celery import shared_task

from .conf import shopguide_settings
from .models import TrainingRun
from .training import execute_run


@shared_task(name="shopguide.train", acks_late=True)
def train(run_id):
    """Train the version requested by ``TrainingRun`` ``run_id`` (queued runs only)."""
    run = TrainingRun.objects.filter(pk=run_id, status=TrainingRun.Status.QUEUED).first()
    if run is None:  # already taken by an earlier delivery of this message, or cancelled
        return None
    return execute_run(run).pk


def enqueue_training(options=None, user=None):
    """Create a queued ``TrainingRun`` and send it to the training queue; return the run."""
    run = TrainingRun.objects.create(options=options or {}, started_by=user)
    result = train.apply_async(args=[run.pk], queue=shopguide_settings.TRAINING_QUEUE)
    TrainingRun.objects.filter(pk=run.pk).update(task_id=result.id)
    run.task_id = result.id
    return run
