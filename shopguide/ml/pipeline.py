"""The training recipe, end to end, on plain data: the Django side only gathers the data and
stores what comes out.

1. Encode the catalogue with the base model; score it on the held-out queries ("before").
2. Build (query, relevant product, hard negative) pairs from the training queries; hard
   negatives are judged-irrelevant products and products the base model ranks high that are
   not judged relevant. A shop without judgments gets pairs made from its catalogue.
3. Fine-tune the bi-encoder, re-encode the catalogue, build the search memory of the training
   queries, fit the fusion (kept with the memory only where it beats plain fusion), score
   again ("after").
4. Optionally train a cross-encoder on the retriever's own top candidates (so it learns what
   the retriever gets wrong), and keep it only with the blend weight that scores best on the
   held-out queries; weight 0 means the reranker is not used.
"""

import math
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from . import version_files
from .encoder import Encoder, default_model_path
from .memory import SearchMemory
from .metrics import evaluate_run
from .ranker import LinearRanker
from .ranking import RERANK_DEPTH, CatalogueIndex, VersionRanking, catalogue_order, rerank
from .reranker import CrossEncoder
from .training import BiEncoderConfig, CrossEncoderConfig, Pair, train_bi_encoder, train_cross_encoder


@dataclass
class RecommenderData:
    """Everything training needs: product texts and graded judgments by normalised query."""

    texts: dict  # product key -> text
    judgments: dict  # query -> {product key: grade}
    train_queries: list
    heldout_queries: list


@dataclass
class PipelineConfig:
    bi_encoder: BiEncoderConfig = field(default_factory=BiEncoderConfig)
    cross_encoder: CrossEncoderConfig = field(default_factory=CrossEncoderConfig)
    max_pairs: int = 36_000
    min_retriever_steps: int = 30  # a small shop makes several passes over its few pairs
    # Fewer fit queries than this cannot tell whether a reranker helps: none is trained. The
    # learned fusion needs this many queries with the training queries included.
    min_ranker_queries: int = 20
    ranker_train_queries: int = 1_000  # training queries the fusion is also fitted on
    positives_per_query: int = 8
    hard_negatives: int = 1
    hard_negative_depth: int = 30  # mine among the base model's top results
    reranker: bool = True
    reranker_max_examples: int = 8_000
    rerank_depth: int = RERANK_DEPTH
    blend_weights: tuple = (0.0, 0.25, 0.5, 0.75, 1.0)
    k: int = 10
    seed: int = 42
    precision: str = "auto"  # see precision.use_bfloat16
    onnx: bool = True  # export the query encoder for serving without torch
    onnx_check_texts: int = 500  # texts its vectors are compared with torch's on


@dataclass
class TrainingOutcome:
    metrics_before: dict
    metrics_after: dict
    uses_ranker: bool
    reranker_weight: float
    counts: dict
    losses: dict
    seconds: dict
    onnx: dict = field(default_factory=dict)  # the ONNX export's check (version_files.export_query_encoder)


def positive_threshold(judgments):
    """Grades at or above half of the top grade in the data count as relevant for training."""
    top = max((grade for judged in judgments.values() for grade in judged.values()), default=0)
    return top / 2 if top > 0 else 1.0


def split_title(text):
    return text.split(" | ", 1)[0]


def catalogue_queries(texts, rng, count):
    """Pseudo-queries for a shop without search history: a few consecutive title words."""
    keys = list(texts)
    rng.shuffle(keys)
    queries = {}
    for key in keys[:count]:
        words = split_title(texts[key]).lower().split()
        if len(words) < 2:
            continue
        size = rng.randint(2, min(4, len(words)))
        start = rng.randint(0, len(words) - size)
        queries.setdefault(" ".join(words[start : start + size]), {})[key] = 1.0
    return queries


def cold_start_data(texts, seed=42, heldout_share=0.1, count=20_000):
    """Judgments made from the catalogue itself, split into training and held-out queries."""
    rng = random.Random(seed)
    judgments = catalogue_queries(texts, rng, count)
    queries = sorted(judgments)
    rng.shuffle(queries)
    held = max(1, int(len(queries) * heldout_share))
    return RecommenderData(texts, judgments, queries[held:], queries[:held])


class Pipeline:
    def __init__(self, data, output_dir, config=None, base_model=None, progress=None):
        self.data, self.config = data, config or PipelineConfig()
        self.output_dir = Path(output_dir)
        self.base_model = Path(base_model) if base_model else default_model_path()
        self.progress = progress or (lambda stage, done, total, loss=None: None)
        self.rng = random.Random(self.config.seed)
        self.keys, self.texts = catalogue_order(data.texts)
        self.seconds, self.losses = {}, {}

    def timed(self, stage, function, *args):
        started = time.monotonic()
        result = function(*args)
        self.seconds[stage] = round(time.monotonic() - started, 1)
        return result

    def qrels(self, queries):
        return {query: self.data.judgments[query] for query in queries}

    @property
    def fit_queries(self):
        """Half of the held-out queries fit the fusion (with training queries), decide whether
        it is kept and pick the reranker weight ..."""
        return self.data.heldout_queries[0::2]

    @property
    def report_queries(self):
        """... the other half measures before and after, unseen by every stage."""
        return self.data.heldout_queries[1::2] or self.data.heldout_queries

    def encode_catalogue(self, encoder, stage):
        return encoder.encode(self.texts, progress=lambda done, total: self.progress(stage, done, total))

    def score(self, ranking, queries=None):
        """Metrics of ``ranking`` on the report queries (or ``queries``): ``dense`` (the
        encoder alone), ``hybrid`` (the fused order) and, for a version with a reranker,
        ``hybrid_reranked`` (what it serves)."""
        qrels = self.qrels(self.report_queries if queries is None else queries)
        ranked = ranking.rank_all(list(qrels))
        metrics = {
            name: evaluate_run({q: getattr(r, attribute) for q, r in ranked.items()}, qrels, self.config.k)
            for name, attribute in (("dense", "dense"), ("hybrid", "fused"))
        }
        if ranking.reranker is not None:
            metrics["hybrid_reranked"] = evaluate_run({q: r.keys for q, r in ranked.items()}, qrels, self.config.k)
        return metrics

    def fit_ranker(self, ranking):
        """Fit the fusion on the fit queries and up to ``ranker_train_queries`` training
        queries, each set carrying half of the loss; keep it only if it beats, on the fit
        queries, the plain fusion of the encoder and the two lexical retrievers (without the
        search memory, whose votes only a fitted fusion weighs).

        The encoder has seen the training queries, so their cosines flatter it; what they add
        is numbers. Measured (nDCG@10 over stored candidates of one trained version each):
        Home Depot dev 0.433 fitted on its 200 fit queries alone, 0.434-0.435 with 1,000
        training queries added (weighted either way); CrowdFlower test 0.823 with plain
        fusion (its 10 fit queries are too few to fit a weight per feature on), 0.843 with its 184
        training queries weighted like the fit queries, 0.854 with each set weighing half."""
        fit, train = self.fit_queries, self.data.train_queries
        train = self.rng.sample(train, min(len(train), self.config.ranker_train_queries))
        if len(fit) + len(train) < self.config.min_ranker_queries or not fit:
            return None
        candidates = ranking.fusion_examples(fit + train)
        examples = [
            (
                candidates[q],
                np.array(
                    [self.data.judgments[q].get(self.keys[i], 0.0) for i in candidates[q].indices], dtype=np.float32
                ),
            )
            for q in fit + train
        ]
        shares = [0.5 / len(fit)] * len(fit) + [0.5 / len(train)] * len(train) if train else [1.0] * len(fit)
        try:
            ranker = LinearRanker.fit(examples, query_weights=shares)
        except ValueError:
            return None
        qrels = self.qrels(fit)
        learned = {q: [self.keys[i] for i in ranker.order(candidates[q])] for q in fit}
        fused = ranking.plain().hybrid(fit)
        k = f"ndcg@{self.config.k}"
        return (
            ranker
            if evaluate_run(learned, qrels, self.config.k)[k] >= evaluate_run(fused, qrels, self.config.k)[k]
            else None
        )

    def search_memory(self, encoder):
        """The training queries' vectors and judged products (see ``memory``)."""
        judgments = {query: self.data.judgments[query] for query in self.data.train_queries}
        vectors = encoder.encode_queries(list(judgments)) if judgments else np.zeros((0, encoder.dimensions))
        return SearchMemory.build(vectors, judgments, positive_threshold(self.data.judgments) * 2)

    def retriever_config(self, pairs):
        """The bi-encoder settings, with enough epochs for ``min_retriever_steps`` steps."""
        config = replace(self.config.bi_encoder, batch_size=max(2, min(self.config.bi_encoder.batch_size, pairs)))
        steps_per_epoch = math.ceil(pairs / config.batch_size) if pairs else 1
        return replace(config, epochs=max(config.epochs, math.ceil(self.config.min_retriever_steps / steps_per_epoch)))

    def build_pairs(self, ranking):
        """Training pairs: relevant products of each query, each with hard negatives mined from
        the base model's top results. Each query gives up to ``positives_per_query`` of them, or
        its share of ``max_pairs`` when that is more: a shop with few queries trains on all it
        knows instead of a handful of pairs."""
        threshold = positive_threshold(self.data.judgments)
        queries = [q for q in self.data.train_queries if any(g >= threshold for g in self.data.judgments[q].values())]
        per_query = max(self.config.positives_per_query, self.config.max_pairs // max(1, len(queries)))
        ranked = ranking.dense_top(queries, self.config.hard_negative_depth) if self.config.hard_negatives else {}
        pairs = []
        for query in queries:
            judged = self.data.judgments[query]
            positives = sorted(
                (key for key, grade in judged.items() if grade >= threshold and key in self.data.texts),
                key=lambda key: -judged[key],
            )[:per_query]
            candidates = [
                key
                for key in ranked.get(query, [])[: self.config.hard_negative_depth]
                if judged.get(key, 0.0) < threshold
            ]
            for positive in positives:
                negatives = self.rng.sample(candidates, min(self.config.hard_negatives, len(candidates)))
                pairs.append(Pair(query, positive, negatives))
        self.rng.shuffle(pairs)
        return pairs[: self.config.max_pairs]

    def reranker_examples(self, candidates):
        """(query, text, target) for training queries: judged products at grade / top grade,
        and the retriever's unjudged top candidates as 0, so the reranker sees its mistakes."""
        top = max(positive_threshold(self.data.judgments) * 2, 1e-9)
        examples = []
        for query, ranking in candidates.items():
            judged = self.data.judgments[query]
            examples += [
                (query, self.data.texts[key], min(grade / top, 1.0))
                for key, grade in judged.items()
                if key in self.data.texts
            ]
            examples += [
                (query, self.data.texts[key], 0.0) for key in ranking[: self.config.rerank_depth] if key not in judged
            ][: len(judged) + 2]
        self.rng.shuffle(examples)
        return examples[: self.config.reranker_max_examples]

    def choose_blend_weight(self, reranker, ranking, hybrid_metrics):
        """Blend weight that scores best on the fit queries (0: reranker unused), and the
        metrics of that blend on the report queries (``hybrid_metrics`` for weight 0: the
        report queries are then not scored at all)."""
        depth, k = self.config.rerank_depth, self.config.k

        def reranked_runs(queries):
            hybrid = ranking.hybrid(queries)
            scores = {}
            for done, query in enumerate(queries, start=1):
                scores[query] = reranker.score(query, [self.data.texts[key] for key in hybrid[query][:depth]])
                self.progress("choosing reranker weight", done, len(queries))
            return lambda weight: {query: rerank(hybrid[query], scores[query], weight) for query in queries}

        fit = reranked_runs(self.fit_queries)
        qrels = self.qrels(self.fit_queries)
        best = max(self.config.blend_weights, key=lambda w: (evaluate_run(fit(w), qrels, k)[f"ndcg@{k}"], -w))
        if best == 0:
            return best, hybrid_metrics
        report = reranked_runs(self.report_queries)(best)
        return best, evaluate_run(report, self.qrels(self.report_queries), k)

    def run(self):
        config = self.config
        encoder = Encoder(self.base_model, config.precision)
        catalogue = self.catalogue = self.timed("lexical_index", CatalogueIndex, self.keys, self.texts)
        self.base_vectors = self.timed("encode_base", self.encode_catalogue, encoder, "encoding catalogue (base model)")
        base = VersionRanking(encoder, catalogue, self.base_vectors)
        before = self.timed("evaluate_base", self.score, base)
        pairs = self.timed("pairs", self.build_pairs, base)
        threshold = positive_threshold(self.data.judgments)
        relevant = {
            query: {key for key, grade in judged.items() if grade >= threshold}
            for query, judged in self.data.judgments.items()
        }
        self.timed(
            "train_retriever",
            train_bi_encoder,
            encoder,
            pairs,
            self.data.texts,
            relevant,
            self.retriever_config(len(pairs)),
            self.recording("retriever"),
        )
        vectors = self.timed("encode_tuned", self.encode_catalogue, encoder, "encoding catalogue (fine-tuned)")
        tuned = VersionRanking(
            encoder, catalogue, vectors, memory=self.timed("search_memory", self.search_memory, encoder)
        )
        tuned.fusion = self.timed("fit_ranker", self.fit_ranker, tuned)
        if tuned.fusion is None:  # plain fusion: the memory's votes would crowd out better candidates
            tuned.memory = None
        after = self.timed("evaluate_tuned", self.score, tuned)
        after["fusion_only"] = self.score(tuned.plain())["hybrid"] if tuned.fusion else after["hybrid"]

        reranker, reranker_weight = None, 0.0
        if config.reranker and self.data.train_queries and len(self.fit_queries) >= config.min_ranker_queries:
            reranker = CrossEncoder(self.base_model, config.precision)
            queries = self.rng.sample(
                self.data.train_queries, min(len(self.data.train_queries), config.reranker_max_examples // 4)
            )
            examples = self.reranker_examples(tuned.hybrid(queries))
            self.timed(
                "train_reranker",
                train_cross_encoder,
                reranker,
                examples,
                config.cross_encoder,
                self.recording("reranker"),
            )
            reranker_weight, after["hybrid_reranked"] = self.timed(
                "evaluate_reranker", self.choose_blend_weight, reranker, tuned, after["hybrid"]
            )
        outcome = TrainingOutcome(
            metrics_before=before,
            metrics_after=after,
            uses_ranker=tuned.fusion is not None,
            reranker_weight=reranker_weight,
            counts={
                "products": len(self.keys),
                "train_queries": len(self.data.train_queries),
                "heldout_queries": len(self.data.heldout_queries),
                "report_queries": len(self.report_queries),
                "pairs": len(pairs),
            },
            losses=self.losses,
            seconds=self.seconds,
        )
        version_files.save(
            self.output_dir,
            encoder=encoder,
            keys=self.keys,
            texts=self.texts,
            vectors=vectors,
            summary={"config": asdict(config), **asdict(outcome)},
            fusion=tuned.fusion,
            memory=tuned.memory,
            reranker=reranker if reranker_weight > 0 else None,
        )
        if config.onnx:
            outcome.onnx = self.timed("export_onnx", self.export_onnx, encoder, tuned, after)
            version_files.save_summary(self.output_dir, {"config": asdict(config), **asdict(outcome)})
        return outcome

    def onnx_check_texts(self):
        """Held-out queries first, then training queries, then product titles: what the ONNX
        encoder's vectors are compared with torch's on."""
        texts = list(dict.fromkeys(self.data.heldout_queries + self.data.train_queries))
        texts += [split_title(text) for text in self.texts]
        return texts[: self.config.onnx_check_texts]

    def export_onnx(self, encoder, tuned, after):
        """Export the encoder for serving and check it (``version_files.export_query_encoder``);
        where it serves, also the held-out hybrid metrics with it encoding the queries."""
        report, served = version_files.export_query_encoder(self.output_dir, encoder, self.onnx_check_texts())
        if served is not None and self.report_queries:
            k = f"ndcg@{self.config.k}"
            report[f"hybrid_{k}"] = after["hybrid"][k]
            report[f"hybrid_{k}_onnx"] = self.score(
                VersionRanking(served, self.catalogue, tuned.vectors, tuned.fusion, tuned.memory)
            )["hybrid"][k]
        return report

    def recording(self, name):
        losses = self.losses.setdefault(name, [])

        def progress(stage, step, total, loss):
            losses.append(round(loss, 4))
            self.progress(stage, step, total, loss)

        return progress
