"""BM25 over product texts, with English stemming: the lexical side of hybrid retrieval."""

import re

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
    """Okapi BM25 over a fixed list of documents; ``search`` ranks all of them for a query."""

    def __init__(self, keys, texts, k1=1.2, b=0.75, analyzer=None):
        self.keys = list(keys)
        self.analyzer = analyzer or Analyzer()
        self.vocabulary = {}
        rows, columns, counts = [], [], []
        lengths = np.zeros(len(self.keys), dtype=np.float32)
        for row, text in enumerate(texts):
            terms = self.analyzer(text)
            lengths[row] = len(terms)
            frequencies = {}
            for term in terms:
                frequencies[term] = frequencies.get(term, 0) + 1
            for term, count in frequencies.items():
                rows.append(row)
                columns.append(self.vocabulary.setdefault(term, len(self.vocabulary)))
                counts.append(count)
        tf = sparse.csc_matrix(
            (np.array(counts, dtype=np.float32), (rows, columns)),
            shape=(len(self.keys), max(len(self.vocabulary), 1)),
        )
        document_frequency = np.diff(tf.indptr).astype(np.float32)
        documents = max(len(self.keys), 1)
        self.idf = np.log1p((documents - document_frequency + 0.5) / (document_frequency + 0.5))
        # Precompute each (document, term) weight once: searching is then a column sum.
        norm = k1 * (1 - b + b * lengths / max(float(lengths.mean()) if len(lengths) else 1.0, 1e-9))
        tf = tf.tocoo()
        weights = tf.data * (k1 + 1) / (tf.data + norm[tf.row])
        self.weights = sparse.csc_matrix((weights, (tf.row, tf.col)), shape=tf.shape)

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
