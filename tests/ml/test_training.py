"""Fine-tuning really learns: made-up words the base model cannot know get the right products."""

from collections import Counter

import pytest
import torch

from shopguide.ml.encoder import Encoder
from shopguide.ml.memory import SearchMemory
from shopguide.ml.metrics import evaluate_run
from shopguide.ml.pipeline import Pipeline, PipelineConfig, RecommenderData, cold_start_data
from shopguide.ml.ranking import CatalogueIndex, VersionRanking
from shopguide.ml.training import BiEncoderConfig, CrossEncoderConfig, Pair, train_bi_encoder
from shopguide.ml.version_files import MEMORY_FILE
from tests.slang_shop import PRODUCTS, SLANG


def ranking_metrics(encoder, qrels):
    keys = list(PRODUCTS)
    texts = [PRODUCTS[k] for k in keys]
    ranking = VersionRanking(encoder, CatalogueIndex(keys, texts), encoder.encode(texts))
    return evaluate_run(ranking.dense_top(list(qrels), depth=8), qrels, k=3)


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_bi_encoder_training_raises_ndcg_on_its_pairs(precision):
    encoder = Encoder(precision=precision)
    qrels = {word: {key: 1.0} for word, key in SLANG.items()}
    before = ranking_metrics(encoder, qrels)
    pairs = [Pair(word, key) for word, key in SLANG.items()] * 4
    relevant = {word: {key} for word, key in SLANG.items()}
    losses = train_bi_encoder(
        encoder,
        pairs,
        PRODUCTS,
        relevant,
        BiEncoderConfig(epochs=4, batch_size=8, learning_rate=3e-4, warmup_share=0.0),
    )
    after = ranking_metrics(encoder, qrels)
    assert losses[-1] < losses[0]
    assert after["ndcg@3"] > before["ndcg@3"] + 0.3
    assert after["mrr"] > 0.8


def test_pipeline_trains_evaluates_and_stores_a_version(tmp_path):
    # Each word: its product is relevant (2), the product before it judged irrelevant (0).
    keys = list(PRODUCTS)
    judgments = {word: {key: 2.0, keys[keys.index(key) - 1]: 0.0} for word, key in SLANG.items()}
    data = RecommenderData(PRODUCTS, judgments, train_queries=list(SLANG)[:6], heldout_queries=list(SLANG)[6:])
    config = PipelineConfig(
        bi_encoder=BiEncoderConfig(epochs=2, batch_size=4),
        cross_encoder=CrossEncoderConfig(epochs=1, batch_size=8),
        rerank_depth=4,
        min_retriever_steps=4,
        min_ranker_queries=1,
    )
    stages = set()
    outcome = Pipeline(data, tmp_path / "v1", config, progress=lambda stage, *rest: stages.add(stage)).run()

    assert set(outcome.metrics_before) == {"dense", "hybrid"}
    assert "hybrid_reranked" in outcome.metrics_after
    assert outcome.counts["pairs"] == 6 and outcome.counts["heldout_queries"] == 2
    assert {"training retriever", "training reranker", "encoding catalogue (fine-tuned)"} <= stages
    assert len(outcome.losses["retriever"]) == 4  # 6 pairs in batches of 4: 2 steps an epoch, 2 epochs
    assert (tmp_path / "v1" / "encoder" / "config.json").is_file()
    assert (tmp_path / "v1" / "product_vectors.npy").is_file()
    assert len(SearchMemory.load(tmp_path / "v1" / MEMORY_FILE)) == 6  # the training queries, not the held-out ones
    assert (tmp_path / "v1" / "reranker").is_dir() == (outcome.reranker_weight > 0)
    assert Encoder(tmp_path / "v1" / "encoder").encode(["x"]).shape == (1, 384)


def test_too_few_heldout_queries_to_judge_a_reranker_train_none(tmp_path):
    data = RecommenderData(
        PRODUCTS,
        {word: {key: 2.0} for word, key in SLANG.items()},
        train_queries=list(SLANG)[:6],
        heldout_queries=list(SLANG)[6:],
    )
    config = PipelineConfig(bi_encoder=BiEncoderConfig(epochs=1, batch_size=4), min_retriever_steps=2)
    stages = set()
    outcome = Pipeline(data, tmp_path / "v1", config, progress=lambda stage, *rest: stages.add(stage)).run()
    assert outcome.reranker_weight == 0 and "training reranker" not in stages
    assert not (tmp_path / "v1" / "reranker").exists()
    # Seven queries cannot fit a fusion either; without one to weigh its votes, no memory is kept.
    assert not outcome.uses_ranker and SearchMemory.load(tmp_path / "v1" / MEMORY_FILE) is None


def test_cold_start_makes_queries_from_titles():
    data = cold_start_data(PRODUCTS, seed=1)
    assert data.train_queries and data.heldout_queries
    for query, judged in data.judgments.items():
        (key,) = judged
        assert query in PRODUCTS[key].lower()
        assert 2 <= len(query.split()) <= 4


def test_missing_model_folder_is_a_clear_error(tmp_path):
    from shopguide.ml.encoder import ModelNotFound

    with pytest.raises(ModelNotFound, match="config.json is missing"):
        Encoder(tmp_path)


def test_grouped_embedding_equals_plain_embedding_and_keeps_gradients():
    encoder = Encoder(precision="float32")  # exact sums: padding changes bfloat16's rounding
    texts = [
        "drill",
        "a cordless hammer drill with two batteries and a charger in a case",
        "bulb",
        "garden hose 50 ft",
        "x",
    ]
    plain = encoder.embed(texts, 48)
    grouped = encoder.embed_grouped(texts, 48, groups=2)
    assert grouped.shape == plain.shape
    assert torch.allclose(grouped, plain, atol=1e-5)  # same rows in the same order
    grouped.sum().backward()
    assert encoder.model.encoder.layer[0].attention.self.query.weight.grad is not None


def test_dense_rankings_for_mining_match_the_full_rankings():
    keys = list(PRODUCTS)
    encoder = Encoder()
    texts = [PRODUCTS[key] for key in keys]
    ranking = VersionRanking(encoder, CatalogueIndex(keys, texts), encoder.encode(texts))
    queries = ["garden hose", "drill", "lamp", "umbrella for the patio"]
    dense = ranking.dense_top(queries, depth=3, chunk=3)  # two chunks
    assert dense == {query: found.dense[:3] for query, found in ranking.rank_all(queries).items()}
    assert dense["garden hose"][0] == "p1"


def test_a_shop_with_few_queries_trains_on_all_their_relevant_products(tmp_path):
    keys = list(PRODUCTS)
    judgments = {
        "lamp": {key: 2.0 for key in keys[:4]},
        "hose": {key: 2.0 for key in keys[4:7]},
        "drill": {keys[7]: 2.0, keys[0]: 0.5},
    }
    data = RecommenderData(PRODUCTS, judgments, train_queries=list(judgments), heldout_queries=[])
    config = PipelineConfig(hard_negatives=0, max_pairs=100, positives_per_query=1)
    few = Pipeline(data, tmp_path, config).build_pairs(None)
    assert sorted((pair.query, pair.positive) for pair in few) == sorted(
        (query, key) for query, judged in judgments.items() for key, grade in judged.items() if grade >= 1.0
    )
    # More queries than max_pairs allows for: each gives its top positives_per_query, and
    # max_pairs caps the total.
    capped = Pipeline(data, tmp_path, PipelineConfig(hard_negatives=0, max_pairs=4, positives_per_query=2))
    pairs = capped.build_pairs(None)
    assert len(pairs) == 4
    assert max(Counter(pair.query for pair in pairs).values()) == 2


def test_the_fusion_is_fitted_on_training_queries_too(tmp_path, monkeypatch):
    from shopguide.ml import pipeline

    keys = list(PRODUCTS)
    judgments = {word: {key: 2.0, keys[keys.index(key) - 1]: 0.0} for word, key in SLANG.items()}
    data = RecommenderData(PRODUCTS, judgments, train_queries=list(SLANG)[:6], heldout_queries=list(SLANG)[6:])
    fitted_on = []
    fit = pipeline.LinearRanker.fit
    monkeypatch.setattr(
        pipeline.LinearRanker,
        "fit",
        lambda examples, query_weights: (
            fitted_on.append([round(weight, 3) for weight in query_weights])
            or fit(examples, query_weights=query_weights)
        ),
    )
    encoder = Encoder()
    texts = [PRODUCTS[key] for key in keys]
    retriever = VersionRanking(encoder, CatalogueIndex(keys, texts), encoder.encode(texts))

    # One fit query and six training queries: enough for a fusion needing 4 queries; the fit
    # query weighs as much as the six training queries together ...
    assert Pipeline(data, tmp_path, PipelineConfig(min_ranker_queries=4)).fit_ranker(retriever) is not None
    assert fitted_on == [[0.5] + [0.083] * 6]
    # ... but not for one needing 8, and not with training queries left out.
    assert Pipeline(data, tmp_path, PipelineConfig(min_ranker_queries=8)).fit_ranker(retriever) is None
    assert (
        Pipeline(data, tmp_path, PipelineConfig(min_ranker_queries=4, ranker_train_queries=0)).fit_ranker(retriever)
        is None
    )
    assert len(fitted_on) == 1
