import numpy as np

from shopguide.ml.lexical import Analyzer, BM25Index

TEXTS = {
    "drill": "Cordless Drill with two batteries",
    "drills": "Drill bit set for drills",
    "hose": "Garden hose, 50 ft",
    "saw": "Circular saw",
}


def test_analyzer_stems_and_drops_stop_words():
    assert Analyzer()("The Drills and Batteries") == ["drill", "batteri"]


def test_numbers_are_split_from_words_as_product_texts_write_them():
    analyse = Analyzer()
    assert analyse("18V Drill, 2x4 stud 1/2in. 2.5 gal") == ["18", "v", "drill", "2", "4", "stud", "1/2", "2.5", "gal"]
    assert analyse("Model X") == ["model", "x"]  # an "x" only separates numbers
    assert analyse("2 in. x 4 in. x 8 ft.") == ["2", "4", "8", "ft"]
    assert Analyzer(standard=True)("18V Drill, 2x4 stud") == ["18v", "drill", "2x4", "stud"]


def test_a_measurement_matches_however_it_is_written():
    index = BM25Index(["stud", "screw"], ["2 in. x 4 in. x 8 ft. Stud", "Wood screw #8 x 2 in."])
    assert index.search("2x4x8") == ["stud", "screw"]
    assert BM25Index(["stud"], ["2 in. x 4 in. x 8 ft. Stud"], analyzer=Analyzer(standard=True)).search("2x4x8") == []


def test_bm25_ranks_by_term_weight_and_skips_non_matches():
    index = BM25Index(TEXTS.keys(), TEXTS.values())
    assert index.search("drills") == ["drills", "drill"]  # two matches of 'drill' beat one
    assert index.search("garden hoses") == ["hose"]
    assert index.search("trampoline") == []
    assert index.search("drill", limit=1) == ["drills"]


def test_coverage_is_the_share_of_query_terms_present():
    index = BM25Index(TEXTS.keys(), TEXTS.values())
    coverage = dict(zip(index.keys, index.coverage("cordless drills hose")))
    assert coverage["drill"] == 2 / 3 and coverage["drills"] == 1 / 3 and coverage["saw"] == 0


def test_an_updated_catalogue_index_ranks_like_one_built_afresh_and_leaves_the_original_alone():
    from shopguide.ml.ranking import CatalogueIndex

    keys, texts = ["a", "b", "c"], ["cordless drill 18v", "garden hose reel", "claw hammer"]
    original = CatalogueIndex(keys, texts)
    changed = original.updated({"b": "brass garden hose nozzle", "d": "drill bit set", "e": "hose clamp"})
    fresh = CatalogueIndex(
        ["a", "b", "c", "d", "e"],
        ["cordless drill 18v", "brass garden hose nozzle", "claw hammer", "drill bit set", "hose clamp"],
    )
    assert changed.keys == fresh.keys and changed.positions == fresh.positions and changed.texts == fresh.texts
    for query in ("drill", "hose", "drill bits", "nozzle"):
        for mine, theirs in zip(changed.lexical_scores(query)[1:], fresh.lexical_scores(query)[1:]):
            np.testing.assert_allclose(mine, theirs, rtol=1e-6)
    assert original.keys == keys and len(original.positions) == 3 and original.texts == texts
    assert len(original.trigram.scores("hose")) == 3 and original.bm25.scores("nozzle").sum() == 0
