"""BM25 over product texts, with English stemming: the lexical side of hybrid retrieval."""

import copy
import re
from array import array

import numpy as np
import Stemmer
from scipy import sparse

TOKEN = re.compile(r"[a-z0-9]+")
STOP_WORDS = frozenset("a an and are as at be by for from in is it of on or the to with".split())


class Analyzer:
    """Lower-cases, splits on non-alphanumerics, drops stop words, stems (Snowball English)."""

    def __init__(self, language="english"):
        self.stemmer = Stemmer.Stemmer(language)

    def __call__(self, text):
        words = [word for word in TOKEN.findall(text.lower()) if word not in STOP_WORDS]
        return self.stemmer.stemWords(words)


class BM25Index:
    """Okapi BM25 over documents with unique keys; ``search`` ranks all of them for a query.

    ``update`` replaces or appends documents in place (a shop edits one product at a time),
    recomputing the weights without analysing the other documents again.
    """

    def __init__(self, keys, texts, k1=1.2, b=0.75, analyzer=None):
        self.k1, self.b = k1, b
        self.keys = []
        self.positions = {}
        self.analyzer = analyzer or Analyzer()
        self.vocabulary = {}
        # The (document, term, count) triples, kept to re-weigh after an update; typed arrays
        # all the way, so building a large catalogue's index leaves no heap of Python ints.
        self._rows = np.zeros(0, dtype=np.int32)
        self._columns = np.zeros(0, dtype=np.int32)
        self._counts = np.zeros(0, dtype=np.float32)
        self.lengths = np.zeros(0, dtype=np.float32)
        self.update(dict(zip(keys, texts)))

    def _analyse(self, row, text, rows, columns, counts):
        terms = self.analyzer(text)
        frequencies = {}
        for term in terms:
            frequencies[term] = frequencies.get(term, 0) + 1
        for term, count in frequencies.items():
            rows.append(row)
            columns.append(self.vocabulary.setdefault(term, len(self.vocabulary)))
            counts.append(count)
        return len(terms)

    def update(self, changes):
        """Replace the text of known keys and append new ones (``changes``: key -> text)."""
        rows, columns, counts, replaced = array("i"), array("i"), array("f"), []
        lengths = {}
        for key, text in changes.items():
            row = self.positions.get(key)
            if row is None:
                row = self.positions[key] = len(self.keys)
                self.keys.append(key)
            else:
                replaced.append(row)
            lengths[row] = self._analyse(row, text, rows, columns, counts)
        if replaced:
            keep = ~np.isin(self._rows, replaced)
            self._rows, self._columns, self._counts = self._rows[keep], self._columns[keep], self._counts[keep]
        self._rows = np.concatenate([self._rows, np.frombuffer(rows, dtype=np.int32)])
        self._columns = np.concatenate([self._columns, np.frombuffer(columns, dtype=np.int32)])
        self._counts = np.concatenate([self._counts, np.frombuffer(counts, dtype=np.float32)])
        self.lengths = np.concatenate([self.lengths, np.zeros(len(self.keys) - len(self.lengths), dtype=np.float32)])
        for row, length in lengths.items():
            self.lengths[row] = length
        self._weigh()

    def copy(self):
        """An independent copy to ``update`` while readers keep using this one."""
        twin = copy.copy(self)
        twin.keys, twin.positions, twin.vocabulary = list(self.keys), dict(self.positions), dict(self.vocabulary)
        return twin

    def _weigh(self):
        shape = (len(self.keys), max(len(self.vocabulary), 1))
        documents = max(len(self.keys), 1)
        document_frequency = np.bincount(self._columns, minlength=shape[1]).astype(np.float32)
        self.idf = np.log1p((documents - document_frequency + 0.5) / (document_frequency + 0.5))
        # Precompute each (document, term) weight once: searching is then a column sum.
        average = float(self.lengths.mean()) if len(self.lengths) else 1.0
        norm = self.k1 * (1 - self.b + self.b * self.lengths / max(average, 1e-9))
        weights = self._counts * (self.k1 + 1) / (self._counts + norm[self._rows])
        self.weights = sparse.csc_matrix((weights, (self._rows, self._columns)), shape=shape)

    def scores(self, query):
        """BM25 score of every document for ``query`` (numpy array aligned with ``keys``)."""
        columns = [self.vocabulary[term] for term in self.analyzer(query) if term in self.vocabulary]
        if not columns:
            return np.zeros(len(self.keys), dtype=np.float32)
        return np.asarray(self.weights[:, columns] @ self.idf[columns]).ravel()

    def coverage(self, query):
        """Share of the query's distinct terms that each document contains (numpy array)."""
        terms = set(self.analyzer(query))
        columns = [self.vocabulary[term] for term in terms if term in self.vocabulary]
        if not columns:
            return np.zeros(len(self.keys), dtype=np.float32)
        present = np.asarray((self.weights[:, columns] > 0).sum(axis=1)).ravel()
        return present.astype(np.float32) / len(terms)

    def search(self, query, limit=100):
        """Keys of the best ``limit`` documents that share a term with the query, best first."""
        scores = self.scores(query)
        matched = np.flatnonzero(scores > 0)
        if len(matched) > limit:
            matched = matched[np.argpartition(-scores[matched], limit - 1)[:limit]]
        best = matched[np.lexsort((matched, -scores[matched]))]
        return [self.keys[index] for index in best]
