"""Training from the shop's own tables: gather the data, run the recipe, store a version.

Judgments come from two places: ``Judgment`` rows (entered or imported) and ``SearchEvent``
rows, turned into grades by ``EVENT_GRADES``: for each (query, product) the strongest event
counts, so a purchase (3) outranks an add-to-cart (2), a click (1) and an impression that
was not clicked (0). An explicit judgment wins over one derived from events. Judgments whose
split is ``dev`` or ``test`` are kept for evaluation and never trained on.
"""

import hashlib
import logging
import secrets
import time
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from .artifacts import artifacts_root, folder_checksum
from .catalog_source import get_catalog_source
from .conf import shopguide_settings
from .evaluation import store_cached_vectors
from .ml.encoder import Encoder, default_model_path, set_torch_threads
from .ml.pipeline import (
    ENCODER_FOLDER, Pipeline, PipelineConfig, RecommenderData, Retriever, cold_start_data, load_ranker,
    positive_threshold,
)
from .models import Judgment, ProductVector, RecommenderModel, SearchEvent, TrainingRun
from .versions import active_model

logger = logging.getLogger(__name__)

EVENT_GRADES = {
    SearchEvent.Kind.PURCHASE: 3.0,
    SearchEvent.Kind.ADD_TO_CART: 2.0,
    SearchEvent.Kind.CLICK: 1.0,
    SearchEvent.Kind.IMPRESSION: 0.0,
}
EVALUATION_SPLITS = ("dev", "test")
DEFAULT_HOLDOUT_SHARE = 0.1
MAX_HELDOUT_QUERIES = 400
MIN_HELDOUT_QUERIES = 10  # a small shop still holds out enough queries to measure on
PROGRESS_WRITE_INTERVAL = 2.0  # seconds between progress writes to the database
ABANDONED_AFTER = timedelta(minutes=10)  # a running run silent this long has lost its worker


class TrainingError(Exception):
    """Training cannot start or finish; the message says what to fix."""


def split_queries(queries, share):
    """(train, held-out): the held-out queries are those with the smallest stable hash, so
    every training run on the same data holds out the same queries."""
    ordered = sorted(queries, key=lambda query: hashlib.sha256(query.encode()).digest())
    count = round(len(ordered) * share)
    count = max(count, min(MIN_HELDOUT_QUERIES, len(ordered) // 5 or 1))
    count = min(count, MAX_HELDOUT_QUERIES)
    heldout = ordered[:count]
    return sorted(ordered[count:]), sorted(heldout)


def event_judgments():
    """``{query: {product key: grade}}`` derived from shopper events by ``EVENT_GRADES``."""
    judgments = {}
    rows = SearchEvent.objects.values_list("query_norm", "product_key", "event").iterator(chunk_size=5000)
    for query, key, event in rows:
        grade = EVENT_GRADES[event]
        judged = judgments.setdefault(query, {})
        judged[key] = max(judged.get(key, 0.0), grade)
    return judgments


def training_judgments():
    judgments = event_judgments()
    rows = Judgment.objects.exclude(split__in=EVALUATION_SPLITS).values_list("query_norm", "product_key", "grade")
    for query, key, grade in rows.iterator(chunk_size=5000):
        judgments.setdefault(query, {})[key] = grade
    return judgments


def gather_data(holdout_share=DEFAULT_HOLDOUT_SHARE):
    """The catalogue's texts and the judgments, split into training and held-out queries."""
    texts = dict(get_catalog_source().iter_texts())
    if not texts:
        raise TrainingError("The catalogue has no available products to train on.")
    judgments = {
        query: {key: grade for key, grade in judged.items() if key in texts}
        for query, judged in training_judgments().items()
    }
    threshold = positive_threshold(judgments)
    usable = sorted(q for q, judged in judgments.items() if any(grade >= threshold for grade in judged.values()))
    if len(usable) < 2:
        logger.info("No usable judgments or events: training from the catalogue itself (cold start).")
        return cold_start_data(texts), True
    train, heldout = split_queries(usable, holdout_share)
    return RecommenderData(texts, {q: judgments[q] for q in usable}, train, heldout), False


class RunProgress:
    """Writes a run's stage, percent and loss curve to the database, at most every 2 s."""

    def __init__(self, run, echo=None):
        self.run, self.echo, self.last_write = run, echo, 0.0

    def __call__(self, stage, done, total, loss=None):
        if self.echo:
            self.echo(stage, done, total, loss)
        if self.run is None:
            return
        if loss is not None:
            self.run.loss_curve.setdefault(stage, []).append(round(loss, 4))
        now = time.monotonic()
        if now - self.last_write >= PROGRESS_WRITE_INTERVAL or done >= total:
            self.last_write = now
            self.run.stage = stage
            self.run.progress = round(100.0 * done / max(total, 1), 1)
            self.run.heartbeat_at = timezone.now()
            self.run.save(update_fields=["stage", "progress", "loss_curve", "heartbeat_at"])


def pipeline_config(options):
    config = PipelineConfig(precision=shopguide_settings.PRECISION)
    if options.get("epochs"):
        config.bi_encoder.epochs = config.cross_encoder.epochs = int(options["epochs"])
    if options.get("max_pairs"):
        config.max_pairs = int(options["max_pairs"])
    if "reranker" in options:
        config.reranker = bool(options["reranker"])
    return config


def train_version(options=None, run=None, echo=None):
    """Train a new version from the shop's data and store it (not activated); return it.

    ``options``: ``epochs``, ``max_pairs``, ``reranker``, ``holdout_share``. Progress goes to
    ``run`` (a ``TrainingRun``) and to ``echo(stage, done, total, loss)``.
    """
    options = options or {}
    set_torch_threads(shopguide_settings.TORCH_THREADS)
    base_model = Path(shopguide_settings.BASE_MODEL or default_model_path())
    data, cold_start = gather_data(options.get("holdout_share", DEFAULT_HOLDOUT_SHARE))
    config = pipeline_config(options)
    folder = artifacts_root() / f"{timezone.now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
    pipeline = Pipeline(data, folder, config, base_model=base_model, progress=RunProgress(run, echo))
    outcome = pipeline.run()
    store_cached_vectors(base_model, pipeline.keys, pipeline.texts, pipeline.base_vectors)
    active = score_active_version(pipeline)
    if active:
        outcome.metrics_before["active"] = active
    with transaction.atomic():
        version = (RecommenderModel.objects.select_for_update().aggregate(top=Max("version"))["top"] or 0) + 1
        model = RecommenderModel.objects.create(
            version=version,
            base_model=str(base_model),
            artifact_path=folder.relative_to(Path(settings.MEDIA_ROOT)).as_posix(),
            checksum=folder_checksum(folder),
            hyperparameters={**options, "cold_start": cold_start, "learned_fusion": outcome.uses_ranker,
                             "pipeline": asdict(config)},
            data_counts={**outcome.counts, "judged_queries": len(data.judgments)},
            metrics_before=outcome.metrics_before,
            metrics_after=outcome.metrics_after,
            heldout_queries=list(data.heldout_queries),
            reranker_weight=outcome.reranker_weight,
            loss_curve={**outcome.losses, "seconds": outcome.seconds},
        )
    return model


def execute_run(run, echo=None, worker=""):
    """Run a queued ``TrainingRun`` to the end, recording success or the error."""
    try:
        start_run(run, worker)
        model = train_version(run.options, run=run, echo=echo)
    except Exception as exc:
        run.status, run.error, run.finished_at = TrainingRun.Status.FAILED, f"{type(exc).__name__}: {exc}", timezone.now()
        run.save(update_fields=["status", "error", "finished_at"])
        raise
    run.status, run.model, run.finished_at = TrainingRun.Status.SUCCEEDED, model, timezone.now()
    run.stage, run.progress = "done", 100.0
    run.metrics = {"before": model.metrics_before, "after": model.metrics_after}
    run.save(update_fields=["status", "model", "finished_at", "stage", "progress", "metrics"])
    return model


def score_active_version(pipeline):
    """The serving version's held-out metrics on the new run's report queries, from its serving
    vectors; None when nothing serves yet."""
    model = active_model()
    if model is None:
        return None
    stored = dict(ProductVector.objects.values_list("product_key", "embedding").iterator(chunk_size=5000))
    if not stored:
        return None
    dimensions = len(next(iter(stored.values())))
    vectors = np.stack([stored.get(key, np.zeros(dimensions, dtype=np.float32)) for key in pipeline.keys])
    retriever = Retriever(Encoder(model.folder / ENCODER_FOLDER, shopguide_settings.PRECISION), pipeline.catalogue, vectors, load_ranker(model.folder))
    return {**pipeline.score(retriever)["hybrid"], "version": model.version}


def is_better_than_active(model):
    """True when ``model`` beats the serving version on the same held-out queries (or none serves)."""
    active = model.metrics_before.get("active")
    if active_model() is None:
        return True
    if not active:
        return False
    return model.ndcg("after", "hybrid") >= active["ndcg@10"]


def training_in_progress():
    """Whether a training run is queued or running (a new request should wait)."""
    return TrainingRun.objects.filter(status__in=[TrainingRun.Status.QUEUED, TrainingRun.Status.RUNNING]).exists()


def start_run(run, worker=""):
    """Mark ``run`` running; refuse when another run is already running."""
    fail_abandoned_runs()
    with transaction.atomic():
        busy = TrainingRun.objects.select_for_update().filter(status=TrainingRun.Status.RUNNING).exclude(pk=run.pk)
        if busy.exists():
            raise TrainingError(f"Training run #{busy.first().pk} is still running; wait for it to finish.")
        run.status, run.started_at, run.heartbeat_at = TrainingRun.Status.RUNNING, timezone.now(), timezone.now()
        run.worker = worker
        run.save(update_fields=["status", "started_at", "heartbeat_at", "worker"])


def fail_abandoned_runs(worker=None):
    """Mark failed the runs whose worker died: those of ``worker`` (a worker that restarts has
    lost whatever it ran) and any run silent for ``ABANDONED_AFTER``."""
    silent = timezone.now() - ABANDONED_AFTER
    running = TrainingRun.objects.filter(status=TrainingRun.Status.RUNNING)
    lost = running.filter(heartbeat_at__lt=silent)
    if worker:
        lost = lost | running.filter(worker=worker)
    return lost.update(
        status=TrainingRun.Status.FAILED, finished_at=timezone.now(),
        error="The worker stopped during training (killed or restarted); the active version was not changed.",
    )
