"""The REST API under /api/shopguide/ and its OpenAPI schema, on real PostgreSQL."""

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from shopguide import serving
from shopguide.models import SearchEvent, ServingState, TrainingRun
from shopguide.serving import ServingIndex
from tests.conftest import heldout_slang, shopper_headers, trained_slang_shop
from tests.slang_shop import SLANG

pytestmark = pytest.mark.serving

shop = pytest.fixture(scope="module")(trained_slang_shop)
URL = "/api/shopguide/recommendations/"
EVENTS = "/api/shopguide/events/"


@pytest.fixture
def products(shop, db):
    ServingIndex.reset()
    cache.clear()
    return shop


def trained_word():
    return next(word for word in SLANG if word not in heldout_slang(0.25))


def assert_rejected(response, field):
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["status"] == 400 and error["code"] == "invalid" and field in error["fields"], error
    assert field in error["message"]


def test_recommendations_for_a_trained_query(client, products):
    word = trained_word()
    first = products[SLANG[word]]
    body = client.get(URL, {"q": word, "limit": 3}).json()
    assert body["query"] == word and body["model_version"] == 1
    assert len(body["results"]) == 3
    top = body["results"][0]
    assert top["product"] == first.external_id and top["title"] == first.title  # the shop's own ids
    assert top["url"] == f"/product/{first.pk}/" and top["reason"]
    others = client.get(URL, {"q": word, "limit": 3, "exclude": f"{first.external_id},no-such"}).json()["results"]
    assert first.external_id not in [item["product"] for item in others] and len(others) == 3


@pytest.mark.parametrize(
    "params, field",
    [
        ({}, "q"),
        ({"q": ""}, "q"),
        ({"q": "x" * 257}, "q"),
        ({"q": "drill", "limit": 0}, "limit"),
        ({"q": "drill", "limit": 51}, "limit"),
        ({"q": "drill", "limit": "abc"}, "limit"),
        ({"q": "drill", "exclude": ",".join(["1"] * 51)}, "exclude"),
    ],
)
def test_bad_recommendation_requests_are_400s_naming_the_field(client, products, params, field):
    assert_rejected(client.get(URL, params), field)


def test_events_are_stored_one_or_many(client, products):
    key = products["p2"].external_id
    shopper = shopper_headers()
    response = client.post(
        EVENTS, {"query": "quimbo", "product": key, "event": "click"}, content_type="application/json", **shopper
    )
    assert response.status_code == 201 and response.json() == {"stored": 1}
    batch = [{"query": "quimbo", "product": p, "event": "impression"} for p in ("p1", "p2", "p3")]
    assert client.post(EVENTS, batch, content_type="application/json", **shopper).json() == {"stored": 3}
    assert SearchEvent.objects.filter(query_norm="quimbo").count() == 4
    assert set(SearchEvent.objects.values_list("event", flat=True)) == {"click", "impression"}
    # Posted by the shop's own ids, stored by key; every event names the token's shopper and
    # is weighed by the shopper's network.
    assert SearchEvent.objects.filter(event="click").get().product_key == str(products["p2"].pk)
    assert SearchEvent.objects.values("session", "voter").distinct().count() == 1


@pytest.mark.parametrize(
    "event, field",
    [
        ({"query": "quimbo", "product": "P2", "event": "like"}, "event"),
        ({"query": "quimbo", "product": "P2", "event": "purchase"}, "event"),
        ({"query": "quimbo", "product": "P2", "event": "add_to_cart"}, "event"),
        ({"query": "quimbo", "product": "no-such-product", "event": "click"}, "product"),
        ({"query": "", "product": "P2", "event": "click"}, "query"),
        ({"product": "P2", "event": "click"}, "query"),
    ],
)
def test_bad_events_are_rejected_and_nothing_is_stored(client, products, event, field):
    good = {"query": "quimbo", "product": "p2", "event": "click"}
    bad = {**event, "product": "p2"} if event.get("product") == "P2" else event
    shopper = shopper_headers()
    assert_rejected(client.post(EVENTS, bad, content_type="application/json", **shopper), field)
    response = client.post(EVENTS, [good, bad], content_type="application/json", **shopper)
    assert_rejected(response, f"1.{field}")
    assert SearchEvent.objects.count() == 0


def test_events_are_throttled_per_client(client, products, settings):
    settings.SHOPGUIDE = {**settings.SHOPGUIDE, "EVENTS_RATE": "2/min"}
    event = {"query": "quimbo", "product": "p2", "event": "click"}
    shopper = shopper_headers()
    codes = [client.post(EVENTS, event, content_type="application/json", **shopper).status_code for _ in range(3)]
    assert codes == [201, 201, 429]
    assert client.post(EVENTS, event, content_type="application/json", **shopper).json()["error"]["code"] == "throttled"
    assert SearchEvent.objects.count() == 2


def test_a_project_that_throttles_its_api_throttles_plain_searches_too(client, products, monkeypatch):
    from rest_framework.throttling import AnonRateThrottle

    from shopguide.api import RecommendationsView

    class TwoPerMinute(AnonRateThrottle):
        rate = "2/min"

    # Plain searches skip DRF's machinery only where the project sets no throttles.
    monkeypatch.setattr(RecommendationsView, "throttle_classes", [TwoPerMinute])
    codes = [client.get(URL, {"q": "quimbo"}).status_code for _ in range(3)]
    assert codes == [200, 200, 429]


@pytest.mark.parametrize(
    "path", ["/api/shopguide/models/", "/api/shopguide/models/1/", "/api/shopguide/training-runs/"]
)
def test_staff_endpoints_refuse_anonymous_and_non_staff(client, products, django_user_model, path):
    assert client.get(path).status_code in (401, 403)
    client.force_login(django_user_model.objects.create_user("shopper", password="pw"))
    response = client.get(path)
    assert response.status_code == 403 and response.json()["error"]["status"] == 403


def test_staff_read_versions_and_runs(staff_client, products):
    versions = staff_client.get("/api/shopguide/models/").json()["results"]
    assert [(v["version"], v["is_active"]) for v in versions] == [(1, True)]
    assert staff_client.get("/api/shopguide/models/1/").json()["metrics_after"]
    run = TrainingRun.objects.get()
    assert staff_client.get(f"/api/shopguide/training-runs/{run.pk}/").json()["model_version"] == 1
    assert staff_client.get("/api/shopguide/models/99/").json()["error"]["code"] == "not_found"


def test_writes_to_staff_endpoints_are_not_allowed(staff_client, products):
    response = staff_client.post("/api/shopguide/models/", {}, content_type="application/json")
    assert response.status_code in (403, 405)


def test_openapi_schema_and_docs_page(client, products):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    assert {"/api/shopguide/recommendations/", "/api/shopguide/events/"} <= set(schema["paths"])
    parameters = {p["name"] for p in schema["paths"]["/api/shopguide/recommendations/"]["get"]["parameters"]}
    assert {"q", "limit", "exclude"} <= parameters
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()


def test_credentials_with_a_nul_character_are_no_server_error(client, products):
    import base64

    token = base64.b64encode(b"ad\x00min:pw").decode()
    response = client.get("/api/shopguide/models/", HTTP_AUTHORIZATION=f"Basic {token}")
    assert response.status_code == 403 and response.json()["error"]["code"] == "not_authenticated"


def test_a_repeated_search_is_answered_without_touching_the_database(
    client, products, django_assert_num_queries, monkeypatch
):
    monkeypatch.setattr(serving, "STATE_TTL", 60)  # within the state's lifetime, however slow the machine
    word = trained_word()
    first = client.get(URL, {"q": word, "limit": 4}).json()
    with django_assert_num_queries(0):
        again = client.get(URL, {"q": f"  {word.upper()} ", "limit": 4}).json()
    assert again["results"] == first["results"] and again["query"] == f"{word.upper()}"
    ServingState.bump()  # any change to the serving vectors retires the answer
    ServingIndex.reset()
    with CaptureQueriesContext(connection) as queries:
        client.get(URL, {"q": word, "limit": 4})
    assert len(queries) > 0
