"""Ranking a query with a version: the one place where candidates are made and ordered.

Serving, the evaluation command, the fusion's fitting and the activation gate all rank through
``VersionRanking.rank``, so what a version was measured on is what it serves:

1. the query is encoded as typed (the encoder learned the shop's own words, mistyped ones
   included) and the vector search starts;
2. meanwhile its words are scored by stemmed BM25 (on the query with unknown words corrected)
   and trigram BM25 (as typed), and the search memory votes, when the version has one;
3. the vector search returns exact cosines for its own top results and for every lexical or
   remembered candidate; the candidates are fused and their features computed (``ranker``);
4. the learned fusion orders them, when the version has one; products the caller does not
   ``keep`` drop out;
5. the version's cross-encoder, when it has one, reorders the top ``rerank_depth``.

Vectors are searched by an object with ``search(query_vector, keys)``: ``InProcessVectors``
here (exact cosine in numpy), or the serving side's pgvector search.
"""

import copy
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from .lexical import BM25Index
from .ranker import DEPTH, FeatureBuilder, lexical_hits, top_indices, trigrams
from .spelling import Speller

RERANK_DEPTH = 30  # fused candidates the cross-encoder may reorder


@dataclass
class Ranked:
    """One query's ranking: keys best first, and what put each of them there."""

    keys: list  # the final order (after the reranker, when it ran)
    fused: list  # the order of the fusion, before the reranker
    dense: list  # the encoder's own top keys (exact cosine)
    lexical: set  # keys found by stemmed BM25 (they share a word with the corrected query)
    spelling: set  # keys found only by trigram BM25 (close spelling)
    corrected: str  # the query with its unknown words corrected (what the words matched)
    reranked: bool = False  # the cross-encoder reordered the top
    terms: dict = field(default_factory=dict)  # key -> the product text's analysed terms
    remembered: set = field(default_factory=set)  # keys the search memory voted for


class InProcessVectors:
    """Exact cosine over vectors held in memory."""

    def __init__(self, vectors):
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)

    @contextmanager
    def search(self, query_vector, keys):
        """Yields ``cosines(wanted)``: the exact cosine of every catalogue position."""
        yield lambda wanted: self.vectors @ query_vector

    def updated(self, positions, rows):
        """A copy with ``rows`` (position -> vector) replaced or appended."""
        vectors = np.zeros((len(positions), self.vectors.shape[1]), dtype=np.float32)
        vectors[: len(self.vectors)] = self.vectors
        for index, vector in rows.items():
            vectors[index] = vector
        return InProcessVectors(vectors)

    def neighbours(self, index, key, limit):
        return top_indices(self.vectors @ self.vectors[index], limit + 1)


def catalogue_order(texts):
    """``(keys, texts)`` of ``texts`` (key -> text) in the order every ranking of a catalogue
    uses: keys sorted as strings. Equal scores are ordered by catalogue position, so training,
    evaluation and serving must agree on the positions to rank alike."""
    keys = sorted(texts)
    return keys, [texts[key] for key in keys]


class CatalogueIndex:
    """The lexical side of one catalogue: stemmed BM25, trigram BM25, feature builder and the
    speller that corrects queries against the catalogue's words. Build it over
    ``catalogue_order``'s keys and texts."""

    def __init__(self, keys, texts):
        self.texts = list(texts)
        self.bm25 = BM25Index(keys, self.texts)
        self.trigram = BM25Index(keys, self.texts, analyzer=trigrams)
        self.features = FeatureBuilder(list(self.texts))
        self._share_keys()
        self.speller = Speller(self.texts)

    def _share_keys(self):
        """One list of keys and one key -> position dict for the catalogue and both indexes
        (the same keys in the same order): 3 MB each on Home Depot's catalogue."""
        self.keys, self.positions = self.bm25.keys, self.bm25.positions
        self.trigram.keys, self.trigram.positions = self.keys, self.positions

    def correct(self, query):
        """``query`` with the words no product contains corrected (see ``spelling``)."""
        return self.speller.correct(query, self.bm25.documents_with)

    def lexical_scores(self, query):
        """``(corrected query, BM25, trigram BM25, trigram coverage)`` over the catalogue. BM25
        (and the ranking features, which take the corrected query) read the query with its
        unknown words corrected; trigram BM25, typo-tolerant by design, reads it as typed."""
        corrected = self.correct(query)
        return corrected, self.bm25.scores(corrected), self.trigram.scores(query), self.trigram.coverage(query)

    def updated(self, changes):
        """A copy with ``changes`` applied (see ``update``); readers of this index are not
        disturbed, so a serving process can swap the copy in between two queries. The speller
        keeps the corrections it knows: a word only new products use is offered from the next
        full build (activation or rescore) on."""
        twin = copy.copy(self)
        twin.texts = list(self.texts)
        twin.bm25, twin.trigram, twin.features = self.bm25.copy(), self.trigram.copy(), self.features.copy()
        twin._share_keys()
        twin.update(changes)
        return twin

    def update(self, changes):
        """Replace or append product texts (``changes``: key -> text); positions of known keys
        stay as they are, new keys go at the end."""
        self.bm25.update(changes)  # appends the new keys to the shared keys and positions
        self.trigram.update(changes)  # finds them there, as rows it has no terms of yet
        for key, text in changes.items():
            index = self.positions[key]
            if index == len(self.texts):
                self.texts.append(text)
            else:
                self.texts[index] = text
            self.features.set_text(index, text)


class VersionRanking:
    """A version's ranking over one catalogue: its query ``encoder``, the catalogue's lexical
    ``catalogue`` index and ``vectors``, and what the version learned beyond the encoder, each
    optional: the ``fusion`` (a ``LinearRanker``), the search ``memory`` and the ``reranker``
    (a ``CrossEncoder`` blended in at ``reranker_weight``)."""

    def __init__(
        self,
        encoder,
        catalogue,
        vectors,
        fusion=None,
        memory=None,
        reranker=None,
        reranker_weight=0.0,
        rerank_depth=RERANK_DEPTH,
    ):
        self.encoder, self.catalogue, self.fusion, self.memory = encoder, catalogue, fusion, memory
        self.vectors = vectors if hasattr(vectors, "search") else InProcessVectors(vectors)
        self.reranker = reranker if reranker_weight > 0 else None
        self.reranker_weight, self.rerank_depth = reranker_weight, rerank_depth
        self.rerank_seconds = 0.0  # running estimate of one reranking's cost

    def over(self, catalogue, vectors):
        """The same version over another catalogue and vectors (a serving process swaps these
        in as a whole when products change)."""
        twin = copy.copy(self)
        twin.catalogue = catalogue
        twin.vectors = vectors if hasattr(vectors, "search") else InProcessVectors(vectors)
        return twin

    def plain(self):
        """The same encoder and catalogue with plain fusion: no learned fusion, memory or reranker."""
        return VersionRanking(self.encoder, self.catalogue, self.vectors)

    def candidates(self, query, query_vector):
        """``(Candidates, dense top positions, BM25 hits, trigram hits, memory votes, corrected
        query)`` for one query: steps 2 and 3 of the module docstring."""
        catalogue = self.catalogue
        with self.vectors.search(query_vector, catalogue.keys) as cosines:  # the vector search runs meanwhile
            corrected, bm25, trigram, coverage = catalogue.lexical_scores(query)
            hits = bm25_top, trigram_top, _ = lexical_hits(bm25, trigram, coverage)
            memory = (
                self.memory.votes(query, query_vector, catalogue.positions, len(catalogue.keys))
                if self.memory
                else None
            )
            voted = memory.top.tolist() if memory else []
            cosine = cosines(set(bm25_top.tolist()) | set(trigram_top.tolist()) | set(voted))
        dense = top_indices(cosine, DEPTH, above=-1.0)  # -1: a position the vector search did not reach
        found = catalogue.features.candidates(
            corrected, cosine, bm25, trigram, coverage, hits=hits, memory=memory, dense=dense
        )
        return found, dense, bm25_top, trigram_top, voted, corrected

    def rank(self, query, *, keep=None, rerank_budget=None):
        """The ``Ranked`` keys for ``query``. ``keep``: the keys that may be returned (default
        all); ``rerank_budget``: seconds the query may take with the reranker (None: rerank
        whenever the version has a reranker)."""
        started = time.monotonic()
        catalogue = self.catalogue
        if not catalogue.keys:
            return Ranked([], [], [], set(), set(), query)
        query_vector = self.encoder.encode_queries([query])[0]
        found, dense, bm25_top, trigram_top, voted, corrected = self.candidates(query, query_vector)
        order = self.fusion.order(found) if self.fusion else found.indices
        keys = [catalogue.keys[index] for index in order]
        if keep is not None:
            keys = [key for key in keys if key in keep]
        reranked = self.maybe_rerank(corrected, keys, rerank_budget, time.monotonic() - started)
        lexical = {catalogue.keys[index] for index in bm25_top}
        return Ranked(
            keys=reranked or keys,
            fused=keys,
            dense=[catalogue.keys[index] for index in dense],
            lexical=lexical,
            spelling={catalogue.keys[index] for index in trigram_top} - lexical,
            corrected=corrected,
            reranked=reranked is not None,
            terms={key: catalogue.features.terms[catalogue.positions[key]] for key in keys},
            remembered={catalogue.keys[index] for index in voted},
        )

    def maybe_rerank(self, query, keys, budget, spent):
        """``keys`` with the cross-encoder blended into the top ``rerank_depth`` (training keeps
        a reranker only where it helped on held-out queries), or None without a reranker or
        when it is not expected to fit in ``budget`` with what the query has cost so far."""
        if self.reranker is None or (budget is not None and spent + self.rerank_seconds > budget):
            return None
        started = time.monotonic()
        top = keys[: self.rerank_depth]
        positions, texts = self.catalogue.positions, self.catalogue.texts
        scores = self.reranker.score(query, [texts[positions[key]] for key in top])
        seconds = time.monotonic() - started
        self.rerank_seconds = 0.8 * self.rerank_seconds + 0.2 * seconds if self.rerank_seconds else seconds
        return rerank(keys, scores, self.reranker_weight)

    def rank_all(self, queries, progress=None):
        """``{query: Ranked}`` for many queries (evaluation), each ranked as ``rank`` does."""
        ranked = {}
        for done, query in enumerate(queries, start=1):
            ranked[query] = self.rank(query)
            if progress:
                progress(done, len(queries))
        return ranked

    def hybrid(self, queries):
        """``{query: keys}``: the fused order (before any reranker) of each query."""
        return {query: ranked.fused for query, ranked in self.rank_all(queries).items()}

    def fusion_examples(self, queries):
        """``{query: Candidates}``: what the fusion orders for each query (to fit one)."""
        return {query: self.candidates(query, self.encoder.encode_queries([query])[0])[0] for query in queries}

    def dense_top(self, queries, depth=DEPTH, chunk=256):
        """The encoder's own top ``depth`` keys for each query (exact cosine, in process),
        without the lexical side: what mining hard negatives needs, for thousands of queries."""
        keys, out = self.catalogue.keys, {}
        vectors = self.encoder.encode_queries(queries)
        for start in range(0, len(queries), chunk):
            scores = vectors[start : start + chunk] @ self.vectors.vectors.T
            for query, row in zip(queries[start : start + chunk], scores):
                out[query] = [keys[i] for i in top_indices(row, depth)]
        return out


def blend(retriever_scores, reranker_scores, weight):
    """Mix min-max normalised scores: ``weight`` 0 keeps the retriever's order, 1 the reranker's."""

    def normalised(values):
        values = np.asarray(values, dtype=np.float32)
        spread = values.max() - values.min() if len(values) else 0
        return (values - values.min()) / spread if spread > 0 else np.zeros_like(values)

    return (1 - weight) * normalised(retriever_scores) + weight * normalised(reranker_scores)


def retriever_scores(count, k=60):
    """Scores for a fused ranking's top ``count`` positions (its reciprocal-rank shape)."""
    return [1.0 / (k + rank) for rank in range(1, count + 1)]


def rerank(ranking, reranker_scores, weight):
    """``ranking`` with its first ``len(reranker_scores)`` items reordered by the blend."""
    depth = len(reranker_scores)
    top = list(ranking[:depth])
    order = np.argsort(-blend(retriever_scores(depth), reranker_scores, weight), kind="stable")
    return [top[index] for index in order] + list(ranking[depth:])
