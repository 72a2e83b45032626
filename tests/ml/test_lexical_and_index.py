import numpy as np

from shopguide.ml.index import VectorIndex
from shopguide.ml.lexical import Analyzer, BM25Index

TEXTS = {
    "drill": "Cordless Drill with two batteries",
    "drills": "Drill bit set for drills",
    "hose": "Garden hose, 50 ft",
    "saw": "Circular saw",
}


def test_analyzer_stems_and_drops_stop_words():
    assert Analyzer()("The Drills and Batteries") == ["drill", "batteri"]


def test_bm25_ranks_by_term_weight_and_skips_non_matches():
    index = BM25Index(TEXTS.keys(), TEXTS.values())
    assert index.search("drills") == ["drills", "drill"]  # two matches of 'drill' beat one
    assert index.search("garden hoses") == ["hose"]
    assert index.search("trampoline") == []
    assert index.search("drill", limit=1) == ["drills"]


def test_vector_index_returns_nearest_first():
    vectors = np.array([[1, 0], [0.6, 0.8], [0, 1]], dtype=np.float32)
    index = VectorIndex(["a", "b", "c"], vectors)
    results = index.search(np.array([0.0, 1.0]), limit=2)
    assert [key for key, _ in results] == ["c", "b"]
    assert results[1][1] == np.float32(0.8)


def test_coverage_is_the_share_of_query_terms_present():
    index = BM25Index(TEXTS.keys(), TEXTS.values())
    coverage = dict(zip(index.keys, index.coverage("cordless drills hose")))
    assert coverage["drill"] == 2 / 3 and coverage["drills"] == 1 / 3 and coverage["saw"] == 0
