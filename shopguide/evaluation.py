"""Measure every retrieval strategy on a judgments file, over the whole catalogue.

Strategies, each ranking all available products for each query:

- ``postgres_fts``: PostgreSQL full-text search as a Django shop uses it by default
  (``SearchQuery``: ``plainto_tsquery``, every word must match; ranked by ``ts_rank``);
- ``bm25``: BM25 over the product texts with English stemming, words split as a standard
  search-engine tokenizer does (letters and digits run together: "18v", "2x4");
- ``bm25_products``: the lexical side of ``hybrid``: the same with shopguide's product
  tokenizer (numbers split from words), on the query with its mistyped words corrected;
- ``zero_shot``: the base sentence encoder, exact cosine;
- ``fine_tuned``: the active version's encoder;
- ``hybrid``: the fine-tuned encoder, stemmed BM25, trigram BM25 and the search memory fused,
  ordered by the version's learned fusion when it has one;
- ``hybrid_reranked``: ``hybrid`` with the active version's reranker blended in;
- ``hybrid_torch``: ``hybrid`` with the queries encoded by torch instead of the version's ONNX
  export (only where queries are served through the export), to show the export ranks alike.

``fine_tuned``, ``hybrid`` and ``hybrid_reranked`` come from one pass of the version's ranking
(``ml.ranking``): the ranking that serves, queries encoded as web processes encode them, with
the version's vectors held in process.
"""

import copy
import time
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import connection

from .catalog_source import get_catalog_source
from .conf import shopguide_settings
from .fulltext import FTS_CONFIG
from .importing import DatasetError, Problem, resolve_judgments
from .ml.encoder import Encoder, default_model_path
from .ml.lexical import Analyzer, BM25Index
from .ml.metrics import evaluate_run
from .ml.ranking import CatalogueIndex, VersionRanking, catalogue_order
from .ml.version_files import load_query_encoder, texts_digest
from .versions import active_model, version_ranking

STRATEGIES = (
    "postgres_fts",
    "bm25",
    "bm25_products",
    "zero_shot",
    "fine_tuned",
    "hybrid",
    "hybrid_reranked",
    "hybrid_torch",
)


def read_judgments(path, split=None):
    """``({normalised query: {product key: grade}}, skipped)`` from a judgments file (dataset
    format), only the rows of ``split`` when given. Products are named by the shop's external
    id; rows of products the catalogue no longer has are left out and counted (``skipped``);
    a malformed row is an error (``DatasetError`` lists them)."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError([Problem(str(path), None, "no such file")])
    rows, keys, skipped = resolve_judgments(path, skip_unknown=True, split=split)
    qrels = {}
    for row in rows:
        qrels.setdefault(row["query_norm"], {})[keys[row["product_id"]]] = row["grade"]
    if not qrels:
        raise DatasetError([Problem(str(path), None, "no judgments" + (f" in split {split!r}" if split else ""))])
    return qrels, len(skipped)


def postgres_fts_rankings(keys, texts, queries, depth=100):
    """Rankings by PostgreSQL full-text search over a temporary, GIN-indexed copy of the texts."""
    rankings = {}
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMPORARY TABLE shopguide_fts_eval (key text PRIMARY KEY, document tsvector)")
        try:
            cursor.executemany(
                "INSERT INTO shopguide_fts_eval VALUES (%s, to_tsvector(%s::regconfig, %s))",
                [(key, FTS_CONFIG, text) for key, text in zip(keys, texts)],
            )
            cursor.execute("CREATE INDEX ON shopguide_fts_eval USING gin (document)")
            cursor.execute("ANALYZE shopguide_fts_eval")
            for query in queries:
                cursor.execute(
                    "SELECT key FROM shopguide_fts_eval, plainto_tsquery(%s::regconfig, %s) AS q "
                    "WHERE document @@ q ORDER BY ts_rank(document, q) DESC, key LIMIT %s",
                    [FTS_CONFIG, query, depth],
                )
                rankings[query] = [row[0] for row in cursor.fetchall()]
        finally:
            cursor.execute("DROP TABLE IF EXISTS shopguide_fts_eval")
    return rankings


def vector_cache_path(model_path, keys, texts):
    name = texts_digest([str(model_path)], [texts_digest(keys, texts)])
    return Path(settings.MEDIA_ROOT) / "shopguide" / "cache" / f"{name}.npy"


def store_cached_vectors(model_path, keys, texts, vectors):
    path = vector_cache_path(model_path, keys, texts)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vectors)


def cached_vectors(encoder, keys, texts, progress):
    """The base model's catalogue vectors, cached under MEDIA_ROOT by model and texts."""
    path = vector_cache_path(encoder.path, keys, texts)
    if path.is_file():
        return np.load(path)
    vectors = encoder.encode(texts, progress=progress)
    store_cached_vectors(encoder.path, keys, texts, vectors)
    return vectors


def evaluate_strategies(qrels, k=10, progress=None):
    """``{strategy: metrics + seconds}``, or ``{"skipped": reason}`` where one cannot run."""
    progress = progress or (lambda stage, done, total: None)
    keys, texts = catalogue_order(dict(get_catalog_source().iter_texts()) if qrels else {})
    queries = list(qrels)
    results, rankings = {}, {}

    def measure(name, compute):
        started = time.monotonic()
        rankings[name] = compute()
        results[name] = {**evaluate_run(rankings[name], qrels, k), "seconds": round(time.monotonic() - started, 2)}

    measure("postgres_fts", lambda: postgres_fts_rankings(keys, texts, queries))
    standard = BM25Index(keys, texts, analyzer=Analyzer(standard=True))
    measure("bm25", lambda: {query: standard.search(query, 100) for query in queries})
    catalogue = CatalogueIndex(keys, texts)
    measure("bm25_products", lambda: {query: catalogue.bm25.search(catalogue.correct(query), 100) for query in queries})
    base = Encoder(shopguide_settings.BASE_MODEL or default_model_path(), shopguide_settings.PRECISION)
    base_vectors = cached_vectors(base, keys, texts, lambda d, t: progress("encoding catalogue (base model)", d, t))
    measure("zero_shot", lambda: VersionRanking(base, catalogue, base_vectors).dense_top(queries))

    model = active_model()
    if model is None:
        for name in STRATEGIES[STRATEGIES.index("fine_tuned") :]:
            results[name] = {"skipped": "no active model version"}
        return results
    ranking = version_ranking(
        model, catalogue, shopguide_settings.PRECISION, lambda d, t: progress("encoding catalogue (active model)", d, t)
    )
    started = time.monotonic()
    ranked = ranking.rank_all(queries, progress=lambda d, t: progress("ranking", d, t))
    seconds = round(time.monotonic() - started, 2)
    measure("fine_tuned", lambda: {query: found.dense for query, found in ranked.items()})
    measure("hybrid", lambda: {query: found.fused for query, found in ranked.items()})
    if ranking.reranker is None:
        results["hybrid_reranked"] = {"skipped": f"version {model.version} has no reranker"}
    else:
        measure("hybrid_reranked", lambda: {query: found.keys for query, found in ranked.items()})
    for name in ("fine_tuned", "hybrid", "hybrid_reranked"):
        if "skipped" not in results[name]:
            results[name]["seconds"] = seconds
    if type(ranking.encoder).__name__ != "OnnxEncoder":
        results["hybrid_torch"] = {"skipped": "queries are encoded with torch already"}
        return results
    with_torch = copy.copy(ranking)  # the same ranking and vectors, only the query encoder differs
    with_torch.encoder = load_query_encoder(
        model.folder, shopguide_settings.PRECISION, shopguide_settings.TORCH_THREADS, onnx=False
    )
    measure(
        "hybrid_torch",
        lambda: {
            query: found.fused
            for query, found in with_torch.rank_all(
                queries, progress=lambda d, t: progress("ranking (torch)", d, t)
            ).items()
        },
    )
    return results
