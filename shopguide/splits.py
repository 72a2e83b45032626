"""Which queries a training holds out, kept apart from the training stack so that a serving
install (no torch) can tell too.

Judgments whose split is ``dev`` or ``test`` are kept for evaluation and never trained on; of
the rest, each training holds out the same share of queries, chosen by a stable hash.
"""

import hashlib

EVALUATION_SPLITS = ("dev", "test")
DEFAULT_HOLDOUT_SHARE = 0.1
MAX_HELDOUT_QUERIES = 400
MIN_HELDOUT_QUERIES = 10  # a small shop still holds out enough queries to measure on


def split_queries(queries, share):
    """(train, held-out): the held-out queries are those with the smallest stable hash, so
    every training run on the same data holds out the same queries."""
    ordered = sorted(queries, key=lambda query: hashlib.sha256(query.encode()).digest())
    count = round(len(ordered) * share)
    count = max(count, min(MIN_HELDOUT_QUERIES, len(ordered) // 5 or 1))
    count = min(count, MAX_HELDOUT_QUERIES)
    heldout = ordered[:count]
    return sorted(ordered[count:]), sorted(heldout)
