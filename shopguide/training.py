"""Training from the shop's own tables: gather the data, run the recipe, store a version.

Judgments come from two places: ``Judgment`` rows (entered or imported) and shoppers' events,
graded by ``feedback`` (a pair counts only when enough distinct shoppers produced it). An
explicit judgment wins over one derived from events. Judgments whose split is ``dev`` or
``test`` are kept for evaluation and never trained on.

The held-out queries that decide activation come from explicit judgments where the shop has
enough of them, and are then graded by those alone: events, however many shoppers stand
behind them, never grade the exam. Without explicit judgments they come from the pairs that
passed ``feedback``'s rule.
"""

import logging
import secrets
import shutil
import tempfile
import time
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from .catalog_source import get_catalog_source
from .conf import shopguide_settings
from .evaluation import store_cached_vectors
from .feedback import verified_grades
from .fulltext import search_keys
from .ml.encoder import default_model_path
from .ml.metrics import evaluate_run
from .ml.pipeline import Pipeline, PipelineConfig, RecommenderData, cold_start_data, positive_threshold
from .ml.precision import set_torch_threads
from .ml.ranker import DEPTH
from .ml.version_files import VersionFilesError, folder_checksum, verify
from .models import Judgment, ProductVector, RecommenderModel, TrainingRun
from .splits import DEFAULT_HOLDOUT_SHARE, EVALUATION_SPLITS, split_queries
from .version_storage import FOLDER, publish
from .versions import active_model, version_ranking

logger = logging.getLogger(__name__)

PROGRESS_WRITE_INTERVAL = 2.0  # seconds between progress writes to the database
ABANDONED_AFTER = timedelta(minutes=10)
FULL_TEXT_SEARCH = "full-text search"  # a running run silent this long has lost its worker


class TrainingError(Exception):
    """Training cannot start or finish; the message says what to fix."""


class TrainingCancelled(Exception):
    """Staff cancelled the run while it trained (see ``operations.cancel``)."""


def explicit_judgments():
    """``{query: {product key: grade}}`` of the ``Judgment`` rows that may be trained on."""
    judgments = {}
    rows = Judgment.objects.exclude(split__in=EVALUATION_SPLITS).values_list("query_norm", "product_key", "grade")
    for query, key, grade in rows.iterator(chunk_size=5000):
        judgments.setdefault(query, {})[key] = grade
    return judgments


def gather_data(holdout_share=DEFAULT_HOLDOUT_SHARE):
    """The catalogue's texts and the judgments, split into training and held-out queries."""
    texts = dict(get_catalog_source().iter_texts())
    if not texts:
        raise TrainingError("The catalogue has no available products to train on.")

    def known(judgments):
        return {
            query: {key: grade for key, grade in judged.items() if key in texts} for query, judged in judgments.items()
        }

    explicit, derived = known(explicit_judgments()), known(verified_grades())
    merged = {query: {**derived.get(query, {}), **explicit.get(query, {})} for query in {*derived, *explicit}}
    threshold = positive_threshold(merged)

    def usable(judgments):
        return sorted(q for q, judged in judgments.items() if any(grade >= threshold for grade in judged.values()))

    everything = usable(merged)
    counts = {"event_pairs": sum(map(len, derived.values()))}
    if len(everything) < 2:
        logger.info("No usable judgments or events: training from the catalogue itself (cold start).")
        return cold_start_data(texts), True, {**counts, "heldout_from": "the catalogue (cold start)"}
    exam = explicit if len(usable(explicit)) >= 2 else merged
    _, heldout = split_queries(usable(exam), holdout_share)
    train = sorted(set(everything) - set(heldout))
    judgments = {**{q: merged[q] for q in train}, **{q: exam[q] for q in heldout}}
    counts["heldout_from"] = "explicit judgments" if exam is explicit else "judgments and shopper events"
    return RecommenderData(texts, judgments, train, heldout), False, counts


class RunProgress:
    """Writes a run's stage, percent and loss curve to the database, at most every 2 s, and
    stops the training (``TrainingCancelled``) once the run is no longer running."""

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
            written = TrainingRun.objects.filter(pk=self.run.pk, status=TrainingRun.Status.RUNNING).update(
                stage=stage,
                progress=self.run.progress,
                loss_curve=self.run.loss_curve,
                heartbeat_at=self.run.heartbeat_at,
            )
            if not written:
                raise TrainingCancelled(f"Training run #{self.run.pk} was cancelled.")


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
    data, cold_start, counts = gather_data(options.get("holdout_share", DEFAULT_HOLDOUT_SHARE))
    config = pipeline_config(options)
    name = f"{FOLDER}/{timezone.now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
    staging = Path(tempfile.mkdtemp(prefix="shopguide-training-"))
    try:
        pipeline = Pipeline(data, staging, config, base_model=base_model, progress=RunProgress(run, echo))
        outcome = pipeline.run()
        store_cached_vectors(base_model, pipeline.keys, pipeline.texts, pipeline.base_vectors)
        outcome.metrics_before["serving"] = score_serving(pipeline)
        checksum = folder_checksum(staging)
        publish(staging, name)  # to the versions' storage, where every machine finds it
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    with transaction.atomic():
        version = (RecommenderModel.objects.select_for_update().aggregate(top=Max("version"))["top"] or 0) + 1
        model = RecommenderModel.objects.create(
            version=version,
            base_model=str(base_model),
            artifact_path=name,
            checksum=checksum,
            hyperparameters={
                **options,
                "cold_start": cold_start,
                "learned_fusion": outcome.uses_ranker,
                "pipeline": asdict(config),
            },
            data_counts={**outcome.counts, "judged_queries": len(data.judgments), **counts},
            metrics_before=outcome.metrics_before,
            metrics_after=outcome.metrics_after,
            reranker_weight=outcome.reranker_weight,
            query_encoder=outcome.onnx,
            loss_curve={**outcome.losses, "seconds": outcome.seconds},
        )
    return model


def execute_run(run, echo=None, worker=""):
    """Run a queued ``TrainingRun`` to the end, recording success or the error; None when
    it was cancelled meanwhile (nothing is stored)."""
    try:
        start_run(run, worker)
        model = train_version(run.options, run=run, echo=echo)
    except TrainingCancelled:
        return None
    except Exception as exc:
        run.status, run.error, run.finished_at = (
            TrainingRun.Status.FAILED,
            f"{type(exc).__name__}: {exc}",
            timezone.now(),
        )
        run.save(update_fields=["status", "error", "finished_at"])
        raise
    run.status, run.model, run.finished_at = TrainingRun.Status.SUCCEEDED, model, timezone.now()
    run.stage, run.progress = "done", 100.0
    run.metrics = {"before": model.metrics_before, "after": model.metrics_after}
    run.save(update_fields=["status", "model", "finished_at", "stage", "progress", "metrics"])
    return model


def serving_rankings(catalogue, queries):
    """``(name, {query: keys})``: how what serves now ranks ``queries`` over ``catalogue``, by
    the serving code itself: the active version's whole ranking (fusion, search memory and
    reranker included) or, where no version serves, full-text search."""
    model = active_model()
    if model is not None and ProductVector.objects.filter(model=model).exists():
        try:
            verify(model.folder, model.checksum)
        except VersionFilesError:
            pass  # it cannot serve: full-text search does
        else:
            ranking = version_ranking(model, catalogue, shopguide_settings.PRECISION)
            return f"v{model.version}", {query: found.keys for query, found in ranking.rank_all(queries).items()}
    return FULL_TEXT_SEARCH, {query: search_keys(query, DEPTH) for query in queries}


def score_serving(pipeline):
    """What serves now, scored on the new run's report queries: ``{"name", "queries",
    metrics...}`` (the activation gate compares the new version against it)."""
    queries = pipeline.report_queries
    name, rankings = serving_rankings(pipeline.catalogue, queries)
    return {"name": name, "queries": len(queries), **evaluate_run(rankings, pipeline.qrels(queries), pipeline.config.k)}


def served_ndcg(model):
    """``model``'s held-out nDCG@10 as it would serve: with its reranker when it kept one."""
    return model.ndcg("after", "hybrid_reranked" if model.reranker_weight > 0 else "hybrid")


def activation_verdict(model):
    """``(better, sentence)``: whether ``model`` beats what served when it was trained, on the
    same held-out queries and by the same ranking code, and the comparison in words. A first
    version must do strictly better than full-text search; a later one at least as well as
    the version it would replace."""
    serving = model.metrics_before.get("serving")
    ours = served_ndcg(model)
    if not serving or ours is None:
        return False, f"v{model.version} was not compared with what serves; activate it by hand if wanted."
    theirs, name = serving["ndcg@10"], serving["name"]
    better = ours > theirs if name == FULL_TEXT_SEARCH else ours >= theirs
    return better, (
        f"held-out nDCG@10 on {serving['queries']} queries: v{model.version} {ours:.3f}, "
        f"{name} (serving) {theirs:.3f}: v{model.version} is {'better' if better else 'not better'}."
    )


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
        status=TrainingRun.Status.FAILED,
        finished_at=timezone.now(),
        error="The worker stopped during training (killed or restarted); the active version was not changed.",
    )
