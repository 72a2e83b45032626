"""Hybrid ranking: candidates from up to four retrievers, ordered by a learned linear fusion.

Candidates are the union of the top results of the fine-tuned encoder (cosine), stemmed BM25,
character-trigram BM25 (which forgives typos such as "soap punp") and, for a version that has
one, the search memory (``memory``), first ordered by weighted reciprocal rank fusion. A linear
model over a few features of each (query, product) pair, fitted with a listwise softmax loss
on held-out queries, then re-orders them. With no fitted weights the fusion order stands (and
training keeps no memory: see ``Pipeline.fit_ranker``).
"""

import re
import sys
from dataclasses import dataclass

import numpy as np

from .lexical import Analyzer

DEPTH = 100  # results taken from each retriever
CANDIDATES = 100  # candidates the fusion model orders
RRF_WEIGHTS = (1.0, 2.0, 1.0, 1.0)  # dense, stemmed BM25, trigram BM25, search memory
RRF_K = 60
TRIGRAM_MIN_COVERAGE = 0.5  # a typo keeps most of a word's trigrams; a stray shared one is noise
FEATURES = (
    "cosine",
    "cosine_gap",
    "bm25",
    "trigram",
    "rrf",
    "fusion_rank",
    "coverage",
    "title_length",
    "query_length",
    "bm25_match",
    "digits_match",
    "phrase_match",
    "first_term_position",
    "last_term_match",
    "memory",
    "memory_share",
    "nearest_search",
)
_DIGITS = re.compile(r"\d+")
_WORD = re.compile(r"[a-z0-9]+")


def trigrams(text):
    """Character trigrams of each word, with word boundaries marked: 'drill' -> '#dr', 'dri', ..."""
    grams = []
    for word in _WORD.findall(text.lower()):
        word = f"#{word}#"
        grams += [word[i : i + 3] for i in range(len(word) - 2)]
    return grams


def top_indices(scores, depth, above=None):
    """Positions of the ``depth`` highest ``scores``, best first (ties: lower position first);
    only scores greater than ``above`` when given."""
    candidates = np.arange(len(scores)) if above is None else np.flatnonzero(scores > above)
    if len(candidates) > depth:
        candidates = candidates[np.argpartition(-scores[candidates], depth - 1)[:depth]]
    return candidates[np.lexsort((candidates, -scores[candidates]))]


def lexical_hits(bm25, trigram, trigram_coverage, depth=DEPTH):
    """The top ``depth`` of stemmed BM25 and of trigram BM25 (products under
    ``TRIGRAM_MIN_COVERAGE`` are not trigram hits), and the trigram scores so masked."""
    trigram = np.where(trigram_coverage >= TRIGRAM_MIN_COVERAGE, trigram, 0.0)
    return top_indices(bm25, depth, above=0), top_indices(trigram, depth, above=0), trigram


@dataclass
class Candidates:
    indices: np.ndarray  # positions in the catalogue, in fusion order
    features: np.ndarray  # one row of FEATURES per candidate


class FeatureBuilder:
    """Turns one query's scores over the whole catalogue into candidates with features."""

    def __init__(self, texts, analyzer=None):
        self.texts = texts
        self.analyzer = analyzer or Analyzer()
        self.terms = [self.analyse(text) for text in texts]

    def analyse(self, text):
        """A text's terms, as a tuple of interned strings: a large catalogue repeats the same
        few thousand terms, and each is then stored once."""
        return tuple(sys.intern(term) for term in self.analyzer(text))

    def copy(self):
        twin = FeatureBuilder.__new__(FeatureBuilder)
        twin.analyzer, twin.texts = self.analyzer, list(self.texts)
        twin.terms = list(self.terms)
        return twin

    def set_text(self, index, text):
        """Replace the text at ``index``, or append it when ``index`` is the next position."""
        if index == len(self.texts):
            self.texts.append(text)
            self.terms.append(self.analyse(text))
        else:
            self.texts[index], self.terms[index] = text, self.analyse(text)

    def candidates(
        self,
        query,
        cosine,
        bm25,
        trigram,
        trigram_coverage,
        depth=DEPTH,
        limit=CANDIDATES,
        hits=None,
        memory=None,
        dense=None,
    ):
        """Fused candidates with features; ``trigram_coverage`` is the share of the query's
        trigrams each product has (products under ``TRIGRAM_MIN_COVERAGE`` are not trigram hits).
        ``hits``: what ``lexical_hits`` returned for these scores, and ``dense`` the cosine's top
        ``depth``, when the caller has them. ``memory``: the ``Votes`` of ``SearchMemory.votes``,
        when the version has one."""
        bm25_top, trigram_top, trigram = hits or lexical_hits(bm25, trigram, trigram_coverage, depth)
        votes, voted_top, nearest = (
            memory
            if memory is not None
            else (np.zeros(len(cosine), dtype=np.float32), np.empty(0, dtype=np.int64), 0.0)
        )
        if dense is None:
            dense = top_indices(cosine, depth, above=-1.0)  # -1: a position the vector search did not reach
        lists = (dense, bm25_top, trigram_top, voted_top)
        fused = {}
        for ranking, weight in zip(lists, RRF_WEIGHTS):
            for rank, index in enumerate(ranking.tolist(), start=1):
                fused[index] = fused.get(index, 0.0) + weight / (RRF_K + rank)
        order = sorted(fused, key=lambda index: (-fused[index], index))[:limit]
        at = np.asarray(order, dtype=np.int64)
        query_terms = self.analyzer(query)
        query_set, digits = set(query_terms), set(_DIGITS.findall(query))
        first, last = (query_terms[0], query_terms[-1]) if query_terms else (None, None)
        query_lower = query.lower()
        lexical = []  # the features that read the product's text
        for index in order:
            terms, lowered = self.terms[index], self.texts[index].lower()
            lexical.append(
                (
                    len(query_set.intersection(terms)),
                    len(terms),
                    len(digits.intersection(_DIGITS.findall(lowered))) / len(digits) if digits else 0.5,
                    query_lower in lowered,
                    terms.index(first) / max(len(terms), 1) if first in terms else 1.0,
                    last in terms,
                )
            )
        lexical = np.asarray(lexical, dtype=np.float32).reshape(len(order), 6)
        best_cosine = cosine[lists[0][0]] if len(lists[0]) else 0.0
        top_bm25, top_trigram = max(float(bm25.max()), 1e-9), max(float(trigram.max()), 1e-9)
        top_votes = max(float(votes.max()), 1e-9) if len(votes) else 1e-9
        features = (
            np.column_stack(
                [
                    cosine[at],
                    cosine[at] - best_cosine,
                    bm25[at] / top_bm25,
                    trigram[at] / top_trigram,
                    np.array([fused[index] for index in order]) * RRF_K,
                    1.0 / (1 + np.arange(len(order))),
                    lexical[:, 0] / max(len(query_set), 1),
                    np.log1p(lexical[:, 1]),
                    np.full(len(order), np.log1p(len(query_set))),
                    bm25[at] > 0,
                    lexical[:, 2],
                    lexical[:, 3],
                    lexical[:, 4],
                    lexical[:, 5],
                    votes[at],
                    votes[at] / top_votes,
                    np.full(len(order), nearest),
                ]
            )
            .astype(np.float32)
            .reshape(len(order), len(FEATURES))
        )
        return Candidates(at, features)


class LinearRanker:
    """Scores candidates with standardised features times learned weights. ``features``: the
    names it was fitted on, a subset of ``FEATURES`` (a version trained before a feature was
    added keeps ranking with the ones it knows)."""

    def __init__(self, weights, mean, scale, features=FEATURES):
        self.weights = np.asarray(weights, dtype=np.float32)
        self.mean = np.asarray(mean, dtype=np.float32)
        self.scale = np.asarray(scale, dtype=np.float32)
        self.features = tuple(features)
        self.columns = np.array([FEATURES.index(name) for name in self.features], dtype=np.int64)

    def score(self, features):
        return ((features[:, self.columns] - self.mean) / self.scale) @ self.weights

    def order(self, candidates):
        return candidates.indices[np.argsort(-self.score(candidates.features), kind="stable")]

    def to_dict(self):
        return {
            "features": list(self.features),
            "weights": self.weights.tolist(),
            "mean": self.mean.tolist(),
            "scale": self.scale.tolist(),
        }

    @classmethod
    def from_dict(cls, data):
        unknown = set(data["features"]) - set(FEATURES)
        if unknown:
            raise ValueError(
                f"The stored ranker uses features this version does not compute ({', '.join(sorted(unknown))}); "
                "retrain the model."
            )
        return cls(data["weights"], data["mean"], data["scale"], data["features"])

    @classmethod
    def fit(cls, examples, epochs=300, learning_rate=0.01, seed=42, query_weights=None):
        """Fit on ``examples`` of (Candidates, gains): each query's softmax over its candidates
        is pulled towards the softmax of their gains (ListNet). ``query_weights`` (one per
        example, default 1) scale each query's share of the loss."""
        query_weights = [1.0] * len(examples) if query_weights is None else list(query_weights)
        examples = [
            (candidates.features, gains, weight)
            for (candidates, gains), weight in zip(examples, query_weights)
            if np.any(gains > 0)
        ]
        if not examples:
            raise ValueError("No query with a relevant candidate to fit the ranker on.")
        import torch  # fitting only: serving scores with numpy

        torch.manual_seed(seed)
        stacked = np.concatenate([features for features, _, _ in examples])
        mean, scale = stacked.mean(0), stacked.std(0) + 1e-6
        inputs = [torch.tensor((features - mean) / scale) for features, _, _ in examples]
        targets = [torch.softmax(torch.tensor(gains, dtype=torch.float32) * 2.0, 0) for _, gains, _ in examples]
        shares = [weight for _, _, weight in examples]
        weights = torch.zeros(len(FEATURES), requires_grad=True)
        optimizer = torch.optim.Adam([weights], lr=learning_rate, weight_decay=1e-4)
        for _ in range(epochs):
            loss = sum(
                -share * (target * torch.log_softmax(x @ weights, 0)).sum()
                for x, target, share in zip(inputs, targets, shares)
            )
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return cls(weights.detach().numpy(), mean, scale)
