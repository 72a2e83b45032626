"""Ranking metrics over graded judgments.

A run ranks the whole catalogue for each query; ``qrels[query][product] = grade``. Unjudged
products have gain 0 and gain = grade (linear), so nDCG@k rewards putting the highest graded
products first. ``condensed`` removes unjudged products from a ranking before scoring, which
stops sparse judgments from penalising a system for what nobody judged.
"""

import math

RELEVANT_GRADE = 0  # a product is relevant (for recall and MRR) when its grade is above this


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
    for query in scored:
        ranking, judged = list(run.get(query, ())), qrels[query]
        totals[f"ndcg@{k}"] += ndcg_at_k(ranking, judged, k)
        totals[f"condensed_ndcg@{k}"] += ndcg_at_k(condensed(ranking, judged), judged, k)
        totals[f"recall@{recall_k}"] += recall_at_k(ranking, judged, recall_k)
        totals["mrr"] += reciprocal_rank(ranking, judged)
    metrics = {name: total / len(scored) for name, total in totals.items()}
    metrics["queries"] = len(scored)
    return metrics
