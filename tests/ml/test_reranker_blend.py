import numpy as np

from shopguide.ml.ranking import blend, rerank


def test_blend_weight_zero_keeps_retriever_order_and_one_follows_reranker():
    retriever = [3.0, 2.0, 1.0]
    reranker = [0.0, 5.0, 10.0]
    assert np.argsort(-blend(retriever, reranker, 0.0)).tolist() == [0, 1, 2]
    assert np.argsort(-blend(retriever, reranker, 1.0)).tolist() == [2, 1, 0]


def test_rerank_reorders_only_the_scored_top():
    ranking = ["a", "b", "c", "d"]
    assert rerank(ranking, [0.0, 1.0, 9.0], 1.0) == ["c", "b", "a", "d"]
    assert rerank(ranking, [0.0, 1.0, 9.0], 0.0) == ranking
