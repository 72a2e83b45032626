"""Arbitrary input never breaks serving: ``recommend()`` and the API answer every string with
results or a 400 naming the field, never a server error (property-based, with hypothesis)."""

import pytest
from django.core.cache import cache
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shopguide.models import SearchEvent
from shopguide.services import MAX_LIMIT, recommend
from shopguide.serving import ServingIndex
from tests.conftest import shopper_headers, trained_slang_shop

pytestmark = pytest.mark.serving

shop = pytest.fixture(scope="module")(trained_slang_shop)
EXAMPLES = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Shapes of input that have broken search boxes elsewhere, mixed with anything at all.
NASTY = st.sampled_from(
    [
        "' OR 1=1; --",
        "'; DROP TABLE catalog_product; --",
        "<script>alert(1)</script>",
        "<b>drill</b>",
        "\u202eldoor\u202c",
        "שלום עולם",
        "مثقاب لاسلكي",
        "🔨🪛 drill 🧰",
        "\x00\x01\x1f",
        "\ud7ff\ufffd",
        "1e309",
        "-1",
        "NaN",
        "0x41",
        "%00",
        "%27",
        "&& | ;",
        "a" * 10_000,
        " ",
        "\t\n\r",
        "drill & hammer | saw !",
        "ﬁ ǅ Ⅻ ①",
        "null",
        "undefined",
        "[]",
        "{}",
        "$(rm -rf /)",
    ]
)
QUERIES = st.one_of(NASTY, st.text(max_size=400), st.text(alphabet=st.characters(codec="utf-8"), max_size=40))


@pytest.fixture
def products(shop, db):
    ServingIndex.reset()
    cache.clear()
    return shop


@EXAMPLES
@given(query=QUERIES, limit=st.integers(min_value=-10, max_value=100))
def test_recommend_answers_any_string(products, query, limit):
    results = recommend(query, limit=limit)
    assert len(results) <= max(1, min(limit, MAX_LIMIT))
    assert all(item.reason for item in results)


@EXAMPLES
@given(
    query=QUERIES,
    limit=st.one_of(st.integers(-10, 100), NASTY, st.text(max_size=8)),
    exclude=st.one_of(NASTY, st.text(max_size=80)),
)
def test_the_recommendations_api_never_fails(client, products, query, limit, exclude):
    response = client.get("/api/shopguide/recommendations/", {"q": query, "limit": limit, "exclude": exclude})
    assert response.status_code in (200, 400), response.content[:500]
    if response.status_code == 400:
        error = response.json()["error"]
        assert set(error["fields"]) <= {"q", "limit", "exclude"} and error["fields"]
    else:
        assert len(response.json()["results"]) <= MAX_LIMIT


EVENT = st.fixed_dictionaries(
    {
        "query": QUERIES,
        "product": st.one_of(NASTY, st.text(max_size=70), st.just("KNOWN")),
        "event": st.one_of(st.sampled_from(["impression", "click", "add_to_cart", "purchase"]), NASTY),
    },
    optional={"session": st.one_of(NASTY, st.text(max_size=80))},
)


@EXAMPLES
@given(body=st.one_of(EVENT, st.lists(EVENT, max_size=4), NASTY, st.integers(), st.none()))
def test_the_events_api_stores_valid_events_and_rejects_the_rest_whole(client, products, settings, body):
    settings.SHOPGUIDE = {**settings.SHOPGUIDE, "EVENTS_RATE": None}
    known = products["p2"].external_id
    for event in body if isinstance(body, list) else [body] if isinstance(body, dict) else []:
        if event["product"] == "KNOWN":
            event["product"] = known
    before = SearchEvent.objects.count()
    response = client.post("/api/shopguide/events/", body, content_type="application/json", **shopper_headers())
    assert response.status_code in (201, 400), response.content[:500]
    stored = SearchEvent.objects.count() - before
    if response.status_code == 400:
        error = response.json()["error"]
        assert stored == 0 and (error["fields"] or error["code"] == "parse_error"), error
    else:
        assert stored == response.json()["stored"] >= 1


def test_a_query_that_grows_when_normalised_is_stored_cut_to_its_column(client, products):
    event = {"query": "ß" * 256, "product": products["p2"].external_id, "event": "click"}  # folds to 512 letters
    response = client.post("/api/shopguide/events/", event, content_type="application/json", **shopper_headers())
    assert response.status_code == 201, response.content[:500]
    assert SearchEvent.objects.get().query_norm == "ss" * 128
