"""Reciprocal rank fusion of several rankings."""

RRF_K = 60


def reciprocal_rank_fusion(rankings, k=RRF_K, weights=None):
    """Fuse ranked lists of ids: each id scores sum(weight / (k + rank)). Best first."""
    weights = weights or [1.0] * len(rankings)
    scores = {}
    for ranking, weight in zip(rankings, weights):
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + weight / (k + rank)
    return sorted(scores, key=lambda item: (-scores[item], str(item)))
