"""``recommend()``, ``similar_products()`` and the template tags, on real PostgreSQL, through the
pgvector HNSW index (where the server has pgvector) and the in-process exact index."""

import pytest
from django.core.cache import cache
from django.template import Context, Template
from django.test import RequestFactory

from catalog.models import Product
from shopguide import operations, services, serving
from shopguide.embeddings import has_pgvector
from shopguide.ml.memory import SearchMemory
from shopguide.ml.ranking import InProcessVectors
from shopguide.models import ProductVector, RecommenderModel, SearchEvent, ServingState
from shopguide.rescoring import refresh_product, stale_keys
from shopguide.services import after_response, recommend, similar_products
from shopguide.serving import ServingIndex
from tests.conftest import heldout_slang, trained_slang_shop
from tests.slang_shop import SLANG

pytestmark = pytest.mark.serving

shop = pytest.fixture(scope="module")(trained_slang_shop)


@pytest.fixture(params=["database", "in_process"])
def products(request, shop, db, monkeypatch):
    """The trained shop, served through one vector path or the other."""
    from django.db import connection

    if request.param == "database" and not has_pgvector(connection):
        pytest.skip("this PostgreSQL has no pgvector: the in-process run covers it")
    if request.param == "in_process":
        monkeypatch.setattr(serving, "has_pgvector", lambda connection: False)
    monkeypatch.setattr(serving, "STATE_TTL", 0)
    ServingIndex.reset()
    cache.clear()
    yield shop
    ServingIndex.reset()


def trained_words():
    return [word for word in SLANG if word not in heldout_slang(0.25)]


def keys(recommendations):
    return [item.product.external_id for item in recommendations]


def test_trained_queries_bring_their_product_first(products):
    words = trained_words()
    assert len(words) == 6
    for word in words:
        assert keys(recommend(word, limit=3))[0] == SLANG[word], word
    index = ServingIndex.get()
    assert isinstance(index.ranking.vectors, InProcessVectors) != index.pgvector


def test_limit_exclusion_and_reasons(products):
    word = trained_words()[0]
    first = products[SLANG[word]]
    assert len(recommend(word, limit=5)) == 5
    assert len(recommend(word, limit=500)) == len(products)  # capped at 50, then by the catalogue
    rest = recommend(word, limit=3, exclude=[first])
    assert len(rest) == 3 and first not in [item.product for item in rest]
    assert keys(recommend(word, exclude=[str(first.pk)])) == keys(rest) + keys(recommend(word))[4:][:5]
    assert all(item.reason for item in rest)
    drill = recommend("cordless drill", limit=1)[0]
    assert drill.product.external_id == "p2" and drill.reason == "matches “cordless drill”"


def test_products_chosen_for_similar_searches_come_from_the_search_memory(products, monkeypatch):
    # The slang shop's version is too small to keep a memory (no fitted fusion): give its
    # serving index one past search, "present for my dad", for which shoppers chose the ladder.
    index = ServingIndex.get()
    past = index.ranking.encoder.encode_queries(["present for my dad"])
    monkeypatch.setattr(index.ranking, "memory", SearchMemory(past, [[(str(products["p5"].pk), 1.0)]]))
    reasons = {item.product.external_id: item.reason for item in recommend("present for dad", limit=8)}
    assert reasons["p5"] == "chosen by shoppers for similar searches"
    assert "chosen by shoppers for similar searches" not in [reasons[pid] for pid in reasons if pid != "p5"]


def test_shopper_purchases_are_the_reason_once_enough_shoppers_made_them(products):
    word = trained_words()[0]
    key = str(products[SLANG[word]].pk)
    own_words = recommend(word, limit=1)[0].reason
    for voter in ("a", "a", "a", "b"):  # two shoppers: not yet a reason
        SearchEvent.objects.create(
            query=word, product_key=key, event="purchase", voter=voter, created_at="2026-11-01T00:00Z"
        )
    ServingState.bump()
    assert recommend(word, limit=1)[0].reason == own_words
    SearchEvent.objects.create(query=word, product_key=key, event="purchase", voter="c", created_at="2026-11-01T00:00Z")
    ServingState.bump()
    assert recommend(word, limit=1)[0].reason == f"often bought after searching “{word}”"


def test_reasons_are_cached_in_no_language_and_translated_when_shown(products, monkeypatch):
    word = trained_words()[0]
    shown = [item.reason for item in recommend(word, limit=3)]
    monkeypatch.setattr(ServingIndex, "rank", lambda self, query: pytest.fail("ranked again"))
    monkeypatch.setattr(services, "gettext", lambda text: "«" + text + "»")  # another language's catalogue
    assert [item.reason for item in recommend(word, limit=3)] == [f"«{reason}»" for reason in shown]


def test_answers_are_cached_until_the_vectors_change(products, monkeypatch):
    word = trained_words()[0]
    first = recommend(word)
    calls = []
    original = ServingIndex.rank
    monkeypatch.setattr(ServingIndex, "rank", lambda self, query: calls.append(query) or original(self, query))
    assert keys(recommend(word.upper())) == keys(first) and calls == []  # same normalised query: cached
    ServingState.bump()
    recommend(word)
    assert calls == [word]


def test_inside_a_request_the_cache_is_written_after_the_response(products, caplog):
    from django.core.signals import request_finished, request_started
    from django.db import close_old_connections

    word = trained_words()[0]
    # The request's signals, as Django's test client sends them (without closing connections).
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    request_started.send(sender=None)
    try:
        first = recommend(word)
        assert keys(recommend(word)) == keys(first)
        assert cache.get(services.cache_key(word)) is None  # not written while the request runs
        calls = []
        after_response(lambda: 1 / 0)  # a failing deferred call does not stop the others
        after_response(calls.append, "done")
        assert calls == []
    finally:
        request_finished.send(sender=None)
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)
    assert [row[0] for row in cache.get(services.cache_key(word))[1]][: len(first)] == [
        str(item.product.pk) for item in first
    ]
    assert calls == ["done"] and "after the response failed" in caplog.text
    after_response(calls.append, "outside a request: at once")
    assert calls[-1] == "outside a request: at once"


def test_a_refreshed_product_is_served_without_a_rebuild(products):
    index = ServingIndex.get()
    bulb = products["p3"]
    Product.objects.filter(pk=bulb.pk).update(title="Garden gnome statue")
    refresh_product(str(bulb.pk))
    top = recommend("gnome statue", limit=1)[0]
    assert top.product.pk == bulb.pk and top.reason == "matches “gnome statue”"
    assert ServingIndex.get() is index  # applied in place

    Product.objects.filter(pk=bulb.pk).update(in_stock=False)
    refresh_product(str(bulb.pk))
    assert bulb.pk not in [item.product.pk for item in recommend("gnome statue", limit=8)]
    assert str(bulb.pk) not in ServingIndex.get().alive


def test_a_product_out_of_stock_since_its_list_was_cached_is_left_out(products):
    word = trained_words()[0]
    before = keys(recommend(word, limit=8))
    Product.objects.filter(external_id=before[0]).update(in_stock=False)  # no signal: the cached list still names it
    assert keys(recommend(word, limit=3)) == before[1:4]


def api_keys(client, query):
    return [row["product"] for row in client.get("/api/shopguide/recommendations/", {"q": query}).json()["results"]]


def test_after_a_bulk_change_refresh_products_takes_a_product_out_of_every_answer_at_once(
    products, client, eager_celery
):
    word = trained_words()[0]
    first = products[SLANG[word]]
    assert api_keys(client, word)[0] == first.external_id  # now in this process's answers too
    Product.objects.filter(pk=first.pk).update(in_stock=False)  # a stock sync: no signal
    assert api_keys(client, word)[0] == first.external_id  # the per-process answer does not know
    assert operations.refresh_products([first]) == 1
    assert first.external_id not in api_keys(client, word) and first not in [i.product for i in recommend(word)]
    assert not ProductVector.objects.filter(product_key=str(first.pk)).exists()


def test_the_reconciliation_finds_what_changed_without_a_signal(products, client):
    word = trained_words()[0]
    first, renamed = products[SLANG[word]], products["p3"]
    assert api_keys(client, word)[0] == first.external_id
    Product.objects.filter(pk=first.pk).update(in_stock=False)
    Product.objects.filter(pk=renamed.pk).update(title="Brass door knocker")
    (new,) = Product.objects.bulk_create([Product(external_id="p9", title="Folding camping chair")])
    assert sorted(stale_keys()) == sorted([str(first.pk), str(renamed.pk), str(new.pk)])
    assert operations.reconcile() == 3 and stale_keys() == []
    assert ProductVector.objects.get(product_key=str(renamed.pk)).text.startswith("Brass door knocker")
    assert ProductVector.objects.filter(product_key=str(new.pk)).exists()
    assert first.external_id not in api_keys(client, word)
    assert operations.reconcile() == 0


def test_the_reconciliation_is_on_the_schedule_by_default(settings):
    from shopguide.tasks import beat_schedule

    insights = {
        "shopguide-insights": {"task": "shopguide.roll_up_insights", "schedule": 3600.0},
        "shopguide-online": {"task": "shopguide.decide_comparison", "schedule": 900.0},
    }
    assert beat_schedule() == {"shopguide-reconcile": {"task": "shopguide.reconcile", "schedule": 300.0}, **insights}
    settings.SHOPGUIDE = {**settings.SHOPGUIDE, "RECONCILE_EVERY_MINUTES": None}
    assert beat_schedule() == insights


def test_a_mistyped_query_is_corrected_against_the_catalogue(products):
    for pk in ("p1", "p5"):  # two products now say "garden" and "ladder": words a shopper may mistype
        Product.objects.filter(pk=products[pk].pk).update(title=f"Garden ladder {pk}")
        refresh_product(str(products[pk].pk))
    ServingIndex.reset()  # the speller learns the catalogue's words when the index is built
    found = recommend("gardn ladderr", limit=2)
    assert sorted(keys(found)) == ["p1", "p5"]
    assert {item.reason for item in found} == {"matches “garden ladder”"}


def test_similar_products_leave_the_product_out(products):
    hose = products["p1"]
    similar = similar_products(hose, limit=4)
    assert len(similar) == 4 and hose not in [item.product for item in similar]
    assert all(item.reason == "similar to “Garden hose, 50 ft, kink free”" for item in similar)


def test_without_an_active_version_full_text_search_answers(products):
    RecommenderModel.objects.update(is_active=False)
    ServingState.bump(epoch=True)
    ServingIndex.reset()
    drill = recommend("drill batteries", limit=3)
    assert keys(drill)[0] == "p2" and drill[0].reason == "matches words of “drill batteries”"
    assert similar_products(products["p2"]) == []
    # Nothing matches: the strip still shows products (the most chosen first, by enough shoppers).
    for voter in "abc":
        SearchEvent.objects.create(
            query="x", product_key=str(products["p7"].pk), event="click", voter=voter, created_at="2026-11-01T00:00Z"
        )
    fallback = recommend("zzzz qqqq", limit=3)
    assert keys(fallback)[0] == "p7" and len(fallback) == 3 and fallback[0].reason == "popular in this shop"


def test_empty_queries_give_nothing(products):
    assert recommend("   \t ") == [] and recommend("\x00\x01") == []


def render(source, **context):
    request = RequestFactory().get("/", context.pop("params", {}))
    request.session = context.pop("session", {})
    return Template("{% load shopguide %}" + source).render(Context({"request": request, **context}))


def test_the_widget_shows_products_with_links_carrying_the_query(products):
    word = trained_words()[0]
    first = products[SLANG[word]]
    html = render("{% shopguide_recommendations query limit=3 %}", query=word)
    assert "Recommended for your search" in html
    assert f'href="/product/{first.pk}/?q={word}"' in html
    assert html.count('class="shopguide-card"') == 3
    html = render("{% shopguide_recommendations query limit=3 exclude=product %}", query=word, product=first)
    assert f"/product/{first.pk}/" not in html


def test_without_the_api_urls_the_strip_renders_without_tracking_and_says_why(products, settings, caplog):
    settings.ROOT_URLCONF = "tests.urls_without_shopguide"
    word = trained_words()[0]
    html = render("{% shopguide_recommendations query limit=3 %}", query=word)
    assert html.count('class="shopguide-card"') == 3 and "data-shopguide-events" not in html
    assert "shopguide.urls is not included" in caplog.text


def test_the_tags_read_the_query_from_the_request_and_session(products):
    word = trained_words()[0]
    first = products[SLANG[word]]
    tag = "{% recommended_for_search limit=2 as items %}{% for item in items %}[{{ item.product.external_id }}]{% endfor %}"
    assert render(tag, params={"q": word}).startswith(f"[{first.external_id}]")
    assert render(tag, session={"shopguide_last_query": word}).startswith(f"[{first.external_id}]")
    assert render(tag) == ""


def test_html_in_queries_and_titles_renders_as_text(products):
    Product.objects.filter(pk=products["p2"].pk).update(title="<script>alert(1)</script> drill")
    refresh_product(str(products["p2"].pk))
    html = render("{% shopguide_recommendations query %}", query="<b>drill</b>")
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt; drill" in html
    assert "<b>" not in html and "%3Cb%3Edrill%3C/b%3E" in html


def test_the_most_searched_queries_are_precomputed(products, monkeypatch):
    from shopguide.services import cache_key, warm_cache

    for word, voters in (("quimbo", "abcd"), ("zorblax", "abc"), ("splonk", "a" * 50)):  # one shopper, however often
        for voter in voters:
            SearchEvent.objects.create(
                query=word, product_key="1", event="impression", voter=voter, created_at="2026-11-01T00:00Z"
            )
    assert warm_cache(limit=3) == 2
    assert cache.get(cache_key("quimbo")) and cache.get(cache_key("zorblax"))
    assert cache.get(cache_key("splonk")) is None


def test_the_swap_leaves_a_valid_hnsw_index(products):
    from django.db import connection

    if not has_pgvector(connection):
        pytest.skip("no pgvector: vectors are searched in process")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = 'shopguide_productvector_hnsw'"
        )
        assert cursor.fetchone() == (True,)


class StubReranker:
    """Stands in for a trained cross-encoder: prefers products whose text has 'ladder'."""

    def score(self, query, texts):
        import numpy as np

        return np.array([10.0 if "ladder" in text.lower() else 0.0 for text in texts], dtype=np.float32)


def test_a_reranker_reorders_the_top_within_the_time_budget(products, settings, monkeypatch):
    word = trained_words()[0]
    index = ServingIndex.get()
    plain = index.rank(word)
    assert not plain.reranked
    monkeypatch.setattr(index.ranking, "reranker", StubReranker())
    monkeypatch.setattr(index.ranking, "reranker_weight", 1.0)
    reranked = index.rank(word)
    assert reranked.reranked and reranked.keys[0] == str(products["p5"].pk)  # the ladder
    assert sorted(reranked.keys) == sorted(plain.keys)
    settings.SHOPGUIDE = {**settings.SHOPGUIDE, "RERANK_BUDGET_MS": 0}
    assert index.rank(word).keys == plain.keys
