"""Search memory: what shoppers chose for the searches a version was trained on.

A new search is compared with those past searches (cosine of the fine-tuned encoder's query
vectors); the products chosen for the nearest ones get a vote, each weighted by how close its
search is and by its grade. Voted products become a fourth candidate list of the hybrid and
their votes ranking features (see ``ranker``): "drill bit set for metal" finds the
products shoppers chose for "metal drill bits" even where no word of the title matches.

Only vectors and product keys are stored, never the text of a search.
"""

from pathlib import Path
from typing import NamedTuple

import numpy as np

from .ranker import DEPTH, top_indices

NEIGHBOURS = 20  # past searches that vote for a new one
SAME_SEARCH = 0.999  # a past search this close to the query is the query itself: it does not vote


class Votes(NamedTuple):
    """What the memory says about one query."""

    scores: np.ndarray  # a vote per catalogue position
    top: np.ndarray  # positions of the ``DEPTH`` most voted products, best first (the candidate list)
    nearest: float  # similarity of the nearest past search that voted


class SearchMemory:
    """Past searches (unit vectors) and, for each, its products with their share of the top
    grade (``choices``: one ``[(product key, share in (0, 1]), ...]`` per search).

    The choices are held as arrays (a search's entries are ``starts[row]:starts[row + 1]`` of
    ``entries``, indexes into the distinct ``keys``, and ``shares``): a Home Depot version's
    7,991 searches with 49,513 choices took 7.4 MB as lists of tuples, 2.8 MB so."""

    def __init__(self, vectors, choices, neighbours=NEIGHBOURS, rows=None):
        choices = [list(chosen) for chosen in choices]
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.vectors = vectors.reshape(len(choices), -1 if vectors.size else vectors.shape[-1])
        index = {}
        self.entries = np.array(
            [index.setdefault(key, len(index)) for chosen in choices for key, _ in chosen], dtype=np.int32
        )
        self.keys = list(index)
        self.shares = np.array([share for chosen in choices for _, share in chosen], dtype=np.float32)
        self.starts = np.zeros(len(choices) + 1, dtype=np.int64)
        np.cumsum([len(chosen) for chosen in choices], out=self.starts[1:])
        self.neighbours = neighbours
        self.rows = rows or {}  # query -> row, while training only (see ``votes``)

    @property
    def choices(self):
        keys, entries, shares = self.keys, self.entries.tolist(), self.shares.tolist()
        return [
            [(keys[entry], share) for entry, share in zip(entries[start:end], shares[start:end])]
            for start, end in zip(self.starts[:-1].tolist(), self.starts[1:].tolist())
        ]

    @classmethod
    def build(cls, vectors, judgments, top_grade, **kwargs):
        """From query vectors (one row per dict entry of ``judgments``, same order) and
        ``judgments`` (query -> {key: grade}); grades 0 choose nothing."""
        top = max(top_grade, 1e-9)
        choices = [
            [(key, min(grade / top, 1.0)) for key, grade in judged.items() if grade > 0]
            for judged in judgments.values()
        ]
        return cls(vectors, choices, rows={query: row for row, query in enumerate(judgments)}, **kwargs)

    def __len__(self):
        return len(self.starts) - 1

    def votes(self, query, query_vector, positions, size):
        """``Votes`` over a catalogue of ``size`` positions (``positions``: key -> position; keys
        no longer in the catalogue are skipped). A search never votes for itself: the fusion is fitted on
        training queries without their own votes, so a served query that was a training query
        must be ranked the same way (its own row is left out while training, where it is
        known, and any past search within ``SAME_SEARCH`` cosine of the query always)."""
        votes = np.zeros(size, dtype=np.float32)
        if not len(self):
            return Votes(votes, np.empty(0, dtype=np.int64), 0.0)
        similarity = self.vectors @ np.asarray(query_vector, dtype=np.float32)
        similarity[similarity >= SAME_SEARCH] = -1.0
        if query in self.rows:
            similarity[self.rows[query]] = -1.0
        nearest = top_indices(similarity, self.neighbours)
        keys = self.keys
        for row in nearest.tolist():
            weight = max(float(similarity[row]), 0.0)
            start, end = self.starts[row], self.starts[row + 1]
            for entry, share in zip(self.entries[start:end].tolist(), self.shares[start:end].tolist()):
                position = positions.get(keys[entry])
                if position is not None:
                    votes[position] += weight * share
        return Votes(votes, top_indices(votes, DEPTH, above=0), max(float(similarity[nearest[0]]), 0.0))

    def save(self, path):
        np.savez(
            Path(path),
            vectors=self.vectors,
            neighbours=self.neighbours,
            counts=np.diff(self.starts),
            keys=np.array([self.keys[entry] for entry in self.entries.tolist()], dtype=str),
            shares=self.shares,
        )

    @classmethod
    def load(cls, path):
        """The memory saved at ``path``, or None where there is none (a version trained
        without one)."""
        path = Path(path)
        if not path.is_file():
            return None
        with np.load(path) as stored:
            vectors, counts, keys, shares, neighbours = (
                stored[name] for name in ("vectors", "counts", "keys", "shares", "neighbours")
            )
        ends = np.cumsum(counts).tolist()
        starts = [0] + ends[:-1]
        keys, shares = keys.tolist(), shares.tolist()
        return cls(
            vectors,
            [list(zip(keys[start:end], shares[start:end])) for start, end in zip(starts, ends)],
            int(neighbours),
        )
