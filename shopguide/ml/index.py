"""Exact nearest-neighbour search over unit vectors (cosine = dot product)."""

import numpy as np


class VectorIndex:
    def __init__(self, keys, vectors):
        self.keys = list(keys)
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if len(self.keys) != len(self.vectors):
            raise ValueError(f"{len(self.keys)} keys for {len(self.vectors)} vectors")

    def __len__(self):
        return len(self.keys)

    def search(self, query_vector, limit=100):
        """``[(key, cosine)]`` of the ``limit`` closest vectors, best first."""
        if not self.keys:
            return []
        scores = self.vectors @ np.asarray(query_vector, dtype=np.float32)
        limit = min(limit, len(scores))
        best = np.argpartition(-scores, limit - 1)[:limit]
        best = best[np.lexsort((best, -scores[best]))]
        return [(self.keys[index], float(scores[index])) for index in best]
