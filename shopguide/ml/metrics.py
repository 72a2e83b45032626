"""Ranking metrics over graded judgments.

A run ranks the whole catalogue for each query; ``qrels[query][product] = grade``. Unjudged
products have gain 0 and gain = grade (linear), so nDCG@k rewards putting the highest graded
products first. ``condensed`` removes unjudged products from a ranking before scoring, which
stops sparse judgments from penalising a system for what nobody judged.
"""

import math

import numpy as np

RELEVANT_GRADE = 0  # a product is relevant (for recall and MRR) when its grade is above this
RESAMPLES = 1000  # bootstrap resamples behind an interval
INTERVAL_QUERIES = 10  # fewer scored queries than this give no interval: it would say nothing


def dcg(gains):
    return sum(gain / math.log2(rank + 2) for rank, gain in enumerate(gains))


def ndcg_at_k(ranking, judged, k):
    ideal = dcg(sorted(judged.values(), reverse=True)[:k])
    if ideal == 0:
        return 0.0
    return dcg([judged.get(product, 0.0) for product in ranking[:k]]) / ideal


def condensed(ranking, judged):
    return [product for product in ranking if product in judged]


def recall_at_k(ranking, judged, k):
    relevant = {product for product, grade in judged.items() if grade > RELEVANT_GRADE}
    if not relevant:
        return 0.0
    return len(relevant.intersection(ranking[:k])) / len(relevant)


def reciprocal_rank(ranking, judged):
    for rank, product in enumerate(ranking, start=1):
        if judged.get(product, 0.0) > RELEVANT_GRADE:
            return 1.0 / rank
    return 0.0


def evaluate_run(run, qrels, k=10, recall_k=100):
    """Mean metrics of ``run`` ({query: ranked product ids}) over the queries of ``qrels``.

    Queries without any product graded above 0 cannot be scored and are skipped; a query
    missing from ``run`` counts as an empty ranking.
    """
    scored = [query for query, judged in qrels.items() if any(grade > RELEVANT_GRADE for grade in judged.values())]
    if not scored:
        raise ValueError("No query has a judged relevant product (grade > 0) to evaluate on.")
    totals = {f"ndcg@{k}": 0.0, f"condensed_ndcg@{k}": 0.0, f"recall@{recall_k}": 0.0, "mrr": 0.0}
    ndcgs = []
    for query in scored:
        ranking, judged = list(run.get(query, ())), qrels[query]
        ndcgs.append(ndcg_at_k(ranking, judged, k))
        totals[f"ndcg@{k}"] += ndcgs[-1]
        totals[f"condensed_ndcg@{k}"] += ndcg_at_k(condensed(ranking, judged), judged, k)
        totals[f"recall@{recall_k}"] += recall_at_k(ranking, judged, recall_k)
        totals["mrr"] += reciprocal_rank(ranking, judged)
    metrics = {name: total / len(scored) for name, total in totals.items()}
    metrics[f"ndcg@{k}_interval"] = bootstrap_interval(ndcgs) if len(ndcgs) >= INTERVAL_QUERIES else None
    metrics["queries"] = len(scored)
    return metrics


def bootstrap_interval(values, level=0.95, resamples=RESAMPLES, seed=0):
    """``[low, high]``: the percentile bootstrap interval at ``level`` of the mean of ``values``
    (one value per query), rounded to 4 places: how far the mean could move with other
    queries like these. The seed is fixed, so the same figures always give the same interval."""
    values = np.asarray(values, dtype=np.float64)
    draws = np.random.default_rng(seed).integers(0, len(values), size=(resamples, len(values)))
    low, high = np.quantile(values[draws].mean(axis=1), [(1 - level) / 2, (1 + level) / 2])
    return [round(float(low), 4), round(float(high), 4)]
