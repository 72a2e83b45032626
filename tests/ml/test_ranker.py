import numpy as np
import pytest

from shopguide.ml.ranker import FEATURES, Candidates, FeatureBuilder, LinearRanker, trigrams


def test_trigrams_mark_word_boundaries():
    assert trigrams("Soap pump") == ["#so", "soa", "oap", "ap#", "#pu", "pum", "ump", "mp#"]


def test_candidates_fuse_the_three_retrievers_with_one_feature_row_each():
    texts = ["cordless drill 20v", "garden hose 50 ft", "drill bit set", "led bulb"]
    builder = FeatureBuilder(texts)
    cosine = np.array([0.9, 0.1, 0.5, 0.2], dtype=np.float32)
    bm25 = np.array([2.0, 0.0, 1.0, 0.0], dtype=np.float32)
    trigram = np.array([1.5, 0.0, 1.0, 0.1], dtype=np.float32)
    coverage = np.array([1.0, 0.0, 0.6, 0.1], dtype=np.float32)
    candidates = builder.candidates("cordless drill 20v", cosine, bm25, trigram, coverage, depth=3, limit=3)
    assert candidates.indices.tolist() == [0, 2, 3]
    assert candidates.features.shape == (3, len(FEATURES))
    row = dict(zip(FEATURES, candidates.features[0]))
    assert row["phrase_match"] == 1.0 and row["digits_match"] == 1.0 and row["coverage"] == 1.0
    assert dict(zip(FEATURES, candidates.features[1]))["digits_match"] == 0.0


def test_linear_ranker_learns_which_feature_predicts_relevance():
    rng = np.random.default_rng(0)
    examples = []
    for _ in range(30):
        features = rng.normal(size=(10, len(FEATURES))).astype(np.float32)
        gains = (features[:, 3] > 0.5).astype(np.float32) * 2  # only "trigram" matters
        examples.append((Candidates(np.arange(10), features), gains))
    ranker = LinearRanker.fit(examples, epochs=200)
    assert np.argmax(ranker.weights) == 3
    restored = LinearRanker.from_dict(ranker.to_dict())
    candidates = examples[0][0]
    assert restored.order(candidates).tolist() == ranker.order(candidates).tolist()


def test_ranker_refuses_weights_for_features_it_does_not_compute():
    data = LinearRanker(np.zeros(len(FEATURES)), np.zeros(len(FEATURES)), np.ones(len(FEATURES))).to_dict()
    data["features"][-1] = "shoe_size"
    with pytest.raises(ValueError, match="shoe_size.*retrain"):
        LinearRanker.from_dict(data)


def test_a_ranker_fitted_before_features_were_added_ranks_with_the_ones_it_knows():
    older = ["cosine", "bm25"]  # as a version trained on fewer features stored it
    ranker = LinearRanker.from_dict({"features": older, "weights": [0.0, 1.0], "mean": [0.0, 0.0], "scale": [1.0, 1.0]})
    features = np.zeros((3, len(FEATURES)), dtype=np.float32)
    features[:, FEATURES.index("bm25")] = [0.1, 0.9, 0.5]
    features[:, FEATURES.index("cosine")] = [0.9, 0.1, 0.5]
    features[:, FEATURES.index("memory")] = [5.0, 0.0, 9.0]  # unknown to it: ignored
    assert ranker.order(Candidates(np.arange(3), features)).tolist() == [1, 2, 0]


def test_query_weights_decide_which_queries_the_fusion_follows():
    # Two queries over the same three candidates that disagree: the first wants the candidate
    # with feature 0 first, the second the one with feature 1.
    features = np.zeros((3, len(FEATURES)), dtype=np.float32)
    features[0, 0] = features[1, 1] = 1.0
    candidates = Candidates(np.arange(3), features)
    examples = [(candidates, np.array([1.0, 0.0, 0.0])), (candidates, np.array([0.0, 1.0, 0.0]))]
    assert LinearRanker.fit(examples, query_weights=[0.9, 0.1]).order(candidates)[0] == 0
    assert LinearRanker.fit(examples, query_weights=[0.1, 0.9]).order(candidates)[0] == 1
