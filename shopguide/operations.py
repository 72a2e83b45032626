"""What staff, schedules and commands can do with shopguide: train, cancel, activate, roll back,
rescore, forget a user. The admin, the Celery tasks and the management commands call these
functions, so each action is checked the same way wherever it starts.

Work that takes long goes to the Celery queues named in the settings; the ``*_here`` variants
run it in the calling process (management commands with ``--sync``, tests).
"""

import logging

from django.db import connection, transaction
from django.utils import timezone

from . import online
from .catalog_source import get_catalog_source
from .conf import shopguide_settings
from .ml.version_files import VersionFilesError, verify
from .models import OnlineComparison, RecommenderModel, TrainingRun
from .privacy import forget_user  # noqa: F401  (one of the operations; it lives with the privacy code)
from .version_storage import delete_version_files
from .versions import active_model, previous_model

logger = logging.getLogger(__name__)

TRAINING_LOCK = 0x73686F70  # PostgreSQL advisory lock key taken while a training run is queued


class OperationError(Exception):
    """An operation that cannot be done now; the message says why and what to do."""


class QueueUnavailable(OperationError):
    """The broker could not take the message; nothing was queued."""


def training_in_progress():
    """The queued or running training run, if any (one training at a time)."""
    return TrainingRun.objects.filter(status__in=[TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING]).first()


def busy_error(run):
    return OperationError(
        f"Training run #{run.pk} is already queued or running; wait for it to finish or cancel it "
        "(the admin's Training runs, or manage.py shopguide_train --cancel)."
    )


def train(options=None, user=None, activate=None):
    """Queue a training run; return it. ``activate``: what to do with the new version (an
    ``AUTO_ACTIVATE`` value; default the setting). Refused while a run is queued or running.
    When the broker cannot be reached the run is marked failed (so it blocks no later
    request) and ``QueueUnavailable`` says why."""
    from .tasks import train as train_task

    with transaction.atomic():
        with connection.cursor() as cursor:  # two requests at once: the second waits, then sees the first's run
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [TRAINING_LOCK])
        busy = training_in_progress()
        if busy is not None:
            raise busy_error(busy)
        run = TrainingRun.objects.create(options=options or {}, started_by=user)
    try:
        result = train_task.apply_async(
            args=[run.pk, activate or shopguide_settings.AUTO_ACTIVATE],
            queue=shopguide_settings.TRAINING_QUEUE,
            retry=True,
            retry_policy={"max_retries": 2, "interval_start": 0.5, "interval_step": 0.5},
        )
    except Exception as exc:
        message = f"The task queue cannot be reached ({type(exc).__name__}: {exc}); try again later."
        TrainingRun.objects.filter(pk=run.pk).update(
            status=TrainingRun.Status.FAILED, error=message, finished_at=timezone.now()
        )
        raise QueueUnavailable(message) from exc
    TrainingRun.objects.filter(pk=run.pk).update(task_id=result.id)
    run.task_id = result.id
    return run


def train_here(options=None, echo=None):
    """Train in this process (``echo(stage, done, total, loss)`` shows progress); return the
    new version, not activated. Refused while another run is queued or running."""
    from .training import TrainingError, execute_run

    busy = training_in_progress()
    if busy is not None:
        raise busy_error(busy)
    run = TrainingRun.objects.create(options=options or {})
    try:
        return execute_run(run, echo=echo)
    except TrainingError as exc:
        raise OperationError(str(exc)) from exc


def cancel(run):
    """Cancel a queued or running training run: a queued one never starts, a running one stops
    at its next progress report (within seconds); no version is stored. Returns whether the
    run was still queued or running."""
    cancelled = TrainingRun.objects.filter(
        pk=run.pk, status__in=[TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING]
    ).update(status=TrainingRun.Status.CANCELLED, finished_at=timezone.now(), error="Cancelled by staff.")
    run.refresh_from_db()
    return bool(cancelled)


def after_training(model, policy):
    """Decide whether a new version goes live (``policy``: an ``AUTO_ACTIVATE`` value), record
    the decision on the version and its run, and queue its activation when it does."""
    from .training import activation_verdict

    better, comparison = activation_verdict(model)
    serving = active_model()
    if policy == "online" and serving is not None:
        compare_online(model, activate_if_better=True)
        verdict = (
            f"{comparison} Compared online with version {serving.version} on shoppers "
            '(AUTO_ACTIVATE is "online"): activated once it wins.'
        )
        go = False
    else:
        go = policy == "always" or (policy in ("if_better", "online") and better)
        verdict = f"{comparison} {'Activated' if go else 'Not activated'}" + (
            "." if policy in ("if_better", "online") else f' (AUTO_ACTIVATE is "{policy}").'
        )
    RecommenderModel.objects.filter(pk=model.pk).update(activation=verdict)
    model.activation = verdict
    if go:
        activate(model)
    return go


def activate(model):
    """Rescore the catalogue with ``model`` on the workers, then make it serve. The version's
    files are checked first (``OperationError`` when they changed)."""
    return rescore(model, activate=True)


def compare_online(model, activate_if_better=False):
    """Start comparing ``model`` with the serving version on shoppers (``online``), ending a
    comparison that runs; with ``activate_if_better`` it is activated once it wins. Returns
    the ``OnlineComparison``."""
    model = checked(model)
    serving = active_model()
    if serving is None:
        raise OperationError("No version serves yet: there is nothing to compare with; activate one.")
    if model.pk == serving.pk:
        raise OperationError(f"Version {model.version} is the one serving: compare another version with it.")
    with transaction.atomic():
        for comparison in OnlineComparison.objects.select_for_update().filter(status=OnlineComparison.Status.RUNNING):
            online.end(
                comparison, OnlineComparison.Status.STOPPED, f"Stopped for version {model.version}'s comparison."
            )
        return OnlineComparison.objects.create(candidate=model, serving=serving, activate_if_better=activate_if_better)


def stop_comparison():
    """End the running online comparison, if any; return it."""
    comparison = online.running()
    if comparison is not None:
        online.end(comparison, OnlineComparison.Status.STOPPED, "Stopped by staff.")
    return comparison


def decide_comparison():
    """End the running online comparison when it is decided (``online.decide``), activating a
    candidate that won when asked to; return the comparison, or None when none runs."""
    comparison = OnlineComparison.objects.filter(status=OnlineComparison.Status.RUNNING).first()
    if comparison is not None and online.decide(comparison):
        activate(comparison.candidate)
    return comparison


def roll_back():
    """Serve the version that was active before the current one again: rescore the catalogue
    with it, then activate it. Returns that version."""
    previous = previous_model()
    if previous is None:
        raise OperationError("There is no earlier active version to roll back to.")
    activate(previous)
    return previous


def checked(model):
    """``model`` (default the active version), its files verified."""
    model = model or active_model()
    if model is None:
        raise OperationError("No version is active yet: activate one first.")
    if model.status == RecommenderModel.Status.PRUNED:
        raise OperationError(f"Version {model.version} cannot serve: its files were pruned (KEEP_VERSIONS).")
    try:
        verify(model.folder, model.checksum)
    except VersionFilesError as exc:
        raise OperationError(f"Version {model.version} cannot serve: {exc}") from exc
    return model


def rescore(model=None, activate=False, reuse_vectors=True):
    """Queue a rescore of the catalogue with ``model`` (default the active version) on the
    workers; its vectors replace the serving ones (and it serves, with ``activate``) when
    every chunk is done. Returns the Celery result."""
    from .tasks import rescore as rescore_task

    model = checked(model)
    try:
        return rescore_task.apply_async(
            args=[model.pk, activate, reuse_vectors], queue=shopguide_settings.RESCORE_QUEUE
        )
    except Exception as exc:
        raise QueueUnavailable(
            f"The task queue cannot be reached ({type(exc).__name__}: {exc}); try again later."
        ) from exc


def rescore_here(model=None, activate=False, reuse_vectors=True, progress=None):
    """Rescore in this process; return the finished ``Rescore``."""
    from .rescoring import RescoreError, rescore_now
    from .versions import ActivationError

    model = checked(model)
    try:
        return rescore_now(model, activate=activate, progress=progress, reuse_vectors=reuse_vectors)
    except (RescoreError, ActivationError) as exc:
        raise OperationError(str(exc)) from exc


def product_keys(products):
    """Keys of ``products``: instances of the product model, primary keys or keys."""
    source = get_catalog_source()
    return [source.key(item) if hasattr(item, "pk") else str(item) for item in products]


def refresh_products(products):
    """Call after changing many products at once without signals (``queryset.update()``, raw
    SQL, an import): those now gone or unavailable leave every answer at once, shared and
    per-process caches included, and the rest are re-encoded by the workers (chunks of
    ``RESCORE_CHUNK_SIZE`` on ``RESCORE_QUEUE``). ``products``: instances, primary keys or
    keys. Returns how many were dropped at once. With the broker down the re-encoding waits
    for the next reconciliation."""
    from .rescoring import refresh_products as refresh
    from .tasks import refresh_products_task

    keys = product_keys(products)
    _, dropped = refresh(keys, encode=False)
    size = shopguide_settings.RESCORE_CHUNK_SIZE
    try:
        for start in range(0, len(keys), size):
            refresh_products_task.apply_async(args=[keys[start : start + size]], queue=shopguide_settings.RESCORE_QUEUE)
    except Exception:
        logger.warning("Could not queue the refresh of %d products; the reconciliation picks them up.", len(keys))
    return dropped


def reconcile():
    """Find the products whose text or availability changed without a signal and refresh
    them here, in chunks; return how many were stale."""
    from .rescoring import refresh_products as refresh
    from .rescoring import stale_keys

    keys = stale_keys()
    size = shopguide_settings.RESCORE_CHUNK_SIZE
    for start in range(0, len(keys), size):
        refresh(keys[start : start + size])
    if keys:
        logger.info("Reconciliation refreshed %d product(s) changed without a signal.", len(keys))
    return len(keys)


def prunable(keep=None):
    """The ready versions whose files the retention rule lets go: all but the active one, the
    previous one, the newest (it may be on its way to serving), the candidate of a running
    online comparison and the ``keep`` newest others (default ``KEEP_VERSIONS``)."""
    keep = shopguide_settings.KEEP_VERSIONS if keep is None else keep
    ready = RecommenderModel.objects.filter(status=RecommenderModel.Status.READY)
    compared = OnlineComparison.objects.filter(status=OnlineComparison.Status.RUNNING).first()
    spared = {
        model.pk
        for model in (active_model(), previous_model(), ready.first(), compared and compared.candidate)
        if model is not None
    }
    return list(ready.exclude(pk__in=spared).order_by("-version")[keep:])


def prune(keep=None):
    """Delete the files of the versions ``prunable(keep)`` names; their rows stay, with their
    figures, marked pruned. Returns them."""
    pruned = prunable(keep)
    for model in pruned:
        delete_version_files(model)
        RecommenderModel.objects.filter(pk=model.pk).update(status=RecommenderModel.Status.PRUNED)
        model.status = RecommenderModel.Status.PRUNED
    if pruned:
        logger.info("Pruned the files of version(s) %s.", ", ".join(str(model.version) for model in pruned))
    return pruned
