import math

import pytest

from shopguide.ml.metrics import condensed, evaluate_run, ndcg_at_k, recall_at_k, reciprocal_rank

JUDGED = {"a": 3.0, "b": 2.0, "c": 0.0, "d": 1.0}


def test_ndcg_by_hand():
    # ranking x(unjudged), b(2), a(3): DCG = 0/log2(2) + 2/log2(3) + 3/log2(4)
    dcg = 2 / math.log2(3) + 3 / 2
    ideal = 3 + 2 / math.log2(3) + 1 / 2  # a, b, d (c has gain 0)
    assert ndcg_at_k(["x", "b", "a"], JUDGED, 3) == pytest.approx(dcg / ideal)
    assert ndcg_at_k(["a", "b", "d"], JUDGED, 3) == pytest.approx(1.0)
    assert ndcg_at_k(["c", "x"], JUDGED, 10) == 0.0


def test_ndcg_cuts_at_k():
    assert ndcg_at_k(["x", "a"], {"a": 1.0}, 1) == 0.0
    assert ndcg_at_k(["x", "a"], {"a": 1.0}, 2) == pytest.approx(1 / math.log2(3))


def test_condensed_drops_unjudged():
    assert condensed(["x", "b", "y", "a"], JUDGED) == ["b", "a"]


def test_recall_and_reciprocal_rank():
    assert recall_at_k(["a", "x", "c", "d"], JUDGED, 3) == pytest.approx(1 / 3)  # relevant: a, b, d
    assert reciprocal_rank(["x", "c", "d"], JUDGED) == pytest.approx(1 / 3)  # c has grade 0
    assert reciprocal_rank(["x"], JUDGED) == 0.0


def test_evaluate_run_averages_and_skips_unscorable_queries():
    qrels = {"q1": {"a": 1.0}, "q2": {"b": 2.0}, "q3": {"c": 0.0}}
    metrics = evaluate_run({"q1": ["a"], "q2": ["x", "b"]}, qrels, k=10)
    assert metrics["queries"] == 2
    assert metrics["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3)) / 2)
    assert metrics["mrr"] == pytest.approx(0.75)
    assert metrics["condensed_ndcg@10"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="No query has a judged relevant product"):
        evaluate_run({}, {"q": {"a": 0.0}})


def test_the_ndcg_comes_with_a_bootstrap_interval_that_narrows_with_more_queries():
    few = {f"q{i}": {"a": 1.0} for i in range(12)}
    run = {f"q{i}": ["a"] if i % 2 else ["x", "y", "a"] for i in range(12)}
    metrics = evaluate_run(run, few, k=10)
    low, high = metrics["ndcg@10_interval"]
    assert low < metrics["ndcg@10"] < high and 0.5 <= low and high <= 1.0
    assert evaluate_run(run, few, k=10)["ndcg@10_interval"] == [low, high]  # the same figures, the same interval
    many = {f"q{i}": {"a": 1.0} for i in range(400)}
    narrow = evaluate_run({f"q{i}": run[f"q{i % 12}"] for i in range(400)}, many, k=10)["ndcg@10_interval"]
    assert narrow[1] - narrow[0] < (high - low) / 3
    same = {f"q{i}": {"a": 2.0} for i in range(10)}
    assert evaluate_run({query: ["a"] for query in same}, same)["ndcg@10_interval"] == [1.0, 1.0]
    assert evaluate_run(run, {"q0": {"a": 1.0}, "q1": {"a": 2.0}})["ndcg@10_interval"] is None  # too few to say
