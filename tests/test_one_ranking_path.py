"""Serving, the evaluation and the activation gate rank with the same code, and the gate keeps a
first version that does no better than full-text search from going live. Real PostgreSQL, the
demo catalogue, versions trained for these tests."""

import random
import re
from collections import Counter
from pathlib import Path

import pytest
from django.core.cache import cache
from django.core.management import call_command

from shopguide import operations, serving
from shopguide.catalog_source import get_catalog_source
from shopguide.conf import shopguide_settings
from shopguide.fulltext import search_keys
from shopguide.ml.pipeline import catalogue_queries
from shopguide.ml.ranking import CatalogueIndex, catalogue_order
from shopguide.models import Judgment, RecommenderModel, SearchEvent
from shopguide.services import recommend
from shopguide.serving import ServingIndex
from shopguide.training import gather_data, serving_rankings
from shopguide.versions import active_model, version_ranking
from tests.conftest import empty_the_shop

ROOT = Path(__file__).resolve().parent.parent
DEMO_DATA = ROOT / "catalog" / "demo_data"
COMPARED = 50  # keys compared per query: all recommend() gives


@pytest.fixture(scope="module")
def judged_demo_shop(django_db_blocker, tmp_path_factory):
    """The demo catalogue judged by queries made of its own titles' words (one relevant product
    each, as a new shop's first version learns), half of them held out; nothing trained."""
    from django.test import override_settings

    with override_settings(MEDIA_ROOT=tmp_path_factory.mktemp("media")), django_db_blocker.unblock():
        call_command("load_catalog", str(DEMO_DATA), verbosity=0)
        Judgment.objects.all().delete()
        SearchEvent.objects.all().delete()
        texts = dict(get_catalog_source().iter_texts())
        for query, judged in catalogue_queries(texts, random.Random(7), len(texts)).items():
            for key, grade in judged.items():
                Judgment.objects.create(query=query, product_key=key, grade=2 * grade, source="imported")
        try:
            yield
        finally:
            empty_the_shop()


def judge_as_full_text_search_ranks(words):
    """Judgments that full-text search gets exactly right: for each word, its first product
    is the relevant one and its second half as relevant."""
    Judgment.objects.all().delete()
    for word in words:
        for key, grade in zip(search_keys(word, 2), (2.0, 1.0)):
            Judgment.objects.create(query=word, product_key=key, grade=grade, source="imported")


def test_a_first_version_no_better_than_full_text_search_does_not_go_live(judged_demo_shop, db, staff_client):
    texts = dict(get_catalog_source().iter_texts())
    counts = Counter(word for text in texts.values() for word in set(re.findall(r"[a-z]{4,}", text.lower())))
    judge_as_full_text_search_ranks(sorted(word for word, count in counts.items() if count >= 3)[:200])
    model = operations.train_here({"holdout_share": 0.5, "epochs": 1, "max_pairs": 16, "reranker": False})
    serving_then = model.metrics_before["serving"]
    assert serving_then["name"] == "full-text search" and serving_then["queries"] >= 40
    assert model.ndcg("after", "hybrid") < serving_then["ndcg@10"]
    assert not operations.after_training(model, "if_better")
    assert active_model() is None and not RecommenderModel.objects.filter(is_active=True).exists()
    model.refresh_from_db()
    ours, theirs = f"{model.ndcg('after', 'hybrid'):.3f}", f"{serving_then['ndcg@10']:.3f}"
    assert f"on {serving_then['queries']} queries: v1 {ours}, full-text search (serving) {theirs}" in model.activation
    assert model.activation.endswith("Not activated.")
    page = staff_client.get(f"/admin/shopguide/recommendermodel/{model.pk}/change/").content.decode()
    assert ours in page and theirs in page and "full-text search (serving)" in page


@pytest.fixture(scope="module")
def trained(judged_demo_shop, django_db_blocker):
    with django_db_blocker.unblock():
        call_command(
            "shopguide_train",
            "--sync",
            "--holdout",
            "0.5",
            "--epochs",
            "1",
            "--max-pairs",
            "16",  # a short training: the subject is that every path ranks alike
            "--no-reranker",
            "--activate",
            verbosity=0,
        )
        yield active_model()


@pytest.fixture(params=["database", "in-process"])
def vector_path(request, trained, monkeypatch, db):
    if request.param == "in-process":
        monkeypatch.setattr(serving, "has_pgvector", lambda connection: False)
    ServingIndex.reset()
    cache.clear()
    yield request.param
    ServingIndex.reset()


def test_serving_evaluation_and_the_gate_rank_alike(trained, vector_path):
    queries = gather_data(0.5)[0].heldout_queries  # the queries it held out: the split is stable
    assert len(queries) >= 100
    catalogue = CatalogueIndex(*catalogue_order(dict(get_catalog_source().iter_texts())))
    evaluation = version_ranking(trained, catalogue, shopguide_settings.PRECISION).rank_all(queries)
    name, gate = serving_rankings(catalogue, queries)
    assert name == f"v{trained.version}"
    source = get_catalog_source()
    for query in queries:
        served = [source.key(item.product) for item in recommend(query, limit=COMPARED)]
        assert served == evaluation[query].keys[:COMPARED] == gate[query][:COMPARED], query
    assert ServingIndex.get().ranking.memory is not None  # the search memory took part
