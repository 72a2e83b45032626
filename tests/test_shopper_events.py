"""Who may write events, and what events may teach: shopper tokens, same-site posts, server-side
purchases, the distinct-shopper rule and the exam that events never grade. Real PostgreSQL."""

import time

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.core import signing
from django.core.cache import caches
from django.test import Client, RequestFactory

from catalog.models import Product
from shopguide import services
from shopguide.feedback import most_chosen_products, shopper_choices, verified_grades
from shopguide.models import Judgment, SearchEvent
from shopguide.shoppers import TOKEN_SALT, read_token, shopper_id_for, shopper_token, voter_for_request
from tests.conftest import needs_torch, shopper_headers

pytestmark = pytest.mark.serving

EVENTS = "/api/shopguide/events/"


@pytest.fixture
def products(db):
    caches["throttle"].clear()
    return [
        Product.objects.create(external_id=f"p{i}", title=title)
        for i, title in enumerate(["Garden hose, 50 ft", "Cordless drill", "Desk lamp", "Air fryer, 4 quarts"])
    ]


def click(product, query="garden hose", kind="click"):
    return {"query": query, "product": product.external_id, "event": kind}


def post(body, **extra):
    return Client().post(EVENTS, body, content_type="application/json", **extra)


def assert_refused(response, status, code):
    assert response.status_code == status, response.content
    assert response.json()["error"]["status"] == status and response.json()["error"]["code"] == code


def test_events_need_a_token_this_shop_issued_and_not_expired(products, monkeypatch):
    assert_refused(post(click(products[0])), 403, "no_shopper_token")
    assert_refused(post(click(products[0]), HTTP_X_SHOPGUIDE_TOKEN="made-up"), 403, "bad_shopper_token")
    forged = signing.dumps({"s": "a" * 32, "v": "b" * 32}, salt="another-purpose")
    assert_refused(post(click(products[0]), HTTP_X_SHOPGUIDE_TOKEN=forged), 403, "bad_shopper_token")
    genuine = shopper_headers()["HTTP_X_SHOPGUIDE_TOKEN"]
    altered = genuine[:-2] + ("AA" if genuine[-2:] != "AA" else "BB")
    assert_refused(post(click(products[0]), HTTP_X_SHOPGUIDE_TOKEN=altered), 403, "bad_shopper_token")
    with monkeypatch.context() as past:
        two_days_ago = time.time() - 2 * 24 * 3600
        past.setattr(signing.time, "time", lambda: two_days_ago)
        expired = shopper_headers()["HTTP_X_SHOPGUIDE_TOKEN"]
    assert_refused(post(click(products[0]), HTTP_X_SHOPGUIDE_TOKEN=expired), 403, "expired_shopper_token")
    assert not SearchEvent.objects.exists()
    assert post(click(products[0]), HTTP_X_SHOPGUIDE_TOKEN=genuine).status_code == 201


def test_pages_render_a_token_that_names_the_session_never_the_key(products):
    client = Client()
    session = SessionStore()
    session.create()
    client.cookies["sessionid"] = session.session_key
    page = client.get("/search/", {"q": "garden hose"}).text
    token = page.split('data-shopguide-token="', 1)[1].split('"', 1)[0]
    assert session.session_key not in page and read_token(token).id == shopper_id_for(session.session_key)
    assert read_token(token).voter == voter_for_request(RequestFactory().get("/"))  # 127.0.0.1's network


@pytest.mark.parametrize(
    "headers",
    [
        {"HTTP_SEC_FETCH_SITE": "cross-site"},
        {"HTTP_ORIGIN": "https://evil.example"},
        {"HTTP_ORIGIN": "null"},  # a sandboxed frame or a file
        {"HTTP_ORIGIN": "http://testserver.evil.example"},
    ],
)
def test_posts_from_other_sites_are_refused(products, headers):
    assert_refused(post(click(products[0]), **headers, **shopper_headers()), 403, "cross_site")
    assert not SearchEvent.objects.exists()


def test_posts_from_the_shops_own_origins_are_taken(products, settings):
    settings.CSRF_TRUSTED_ORIGINS = ["https://www.shop.example"]
    for headers in (
        {"HTTP_ORIGIN": "http://testserver", "HTTP_SEC_FETCH_SITE": "same-origin"},
        {"HTTP_ORIGIN": "https://www.shop.example", "HTTP_SEC_FETCH_SITE": "same-site"},
        {},  # an older browser sends neither
    ):
        assert post(click(products[0]), **headers, **shopper_headers()).status_code == 201
    assert SearchEvent.objects.count() == 3


def shopper_request(address="198.51.100.20", query=None):
    request = RequestFactory().post("/checkout/", REMOTE_ADDR=address)
    request.session = SessionStore()
    if query:
        request.session[services.LAST_QUERY_SESSION_KEY] = query
    request.session.create()
    return request


def test_purchases_and_carts_are_recorded_by_the_shops_server_only(products, django_user_model):
    assert post(click(products[0], kind="purchase"), **shopper_headers()).status_code == 400
    request = shopper_request(query="garden hose")
    bought = services.record_purchase(products[0], request=request)
    carted = services.record_add_to_cart(products[1], request=request, query="drill")
    assert (bought.query_norm, bought.event, bought.product_key) == ("garden hose", "purchase", str(products[0].pk))
    assert (carted.query_norm, carted.event) == ("drill", "add_to_cart")
    assert bought.session == carted.session == shopper_id_for(request.session.session_key)
    assert bought.voter == voter_for_request(request) and "198.51.100" not in bought.voter
    assert services.record_purchase(products[0], request=shopper_request()) is None  # no search known
    user = django_user_model.objects.create_user("buyer")
    by_callback = services.record_purchase(products[2], user=user, query="desk lamp")
    assert by_callback.session and by_callback.voter == by_callback.session  # weighed as the account
    with pytest.raises(TypeError):
        services.record_purchase(products[0], query="hose")
    assert SearchEvent.objects.count() == 3


def events_from(voters, product, kind="click", query="garden hose"):
    for voter in voters:
        SearchEvent.objects.create(
            query=query,
            product_key=str(product.pk),
            event=kind,
            session=voter,
            voter=voter,
            created_at="2026-11-01T00:00Z",
        )


def test_a_pair_teaches_only_what_enough_distinct_shoppers_did(products, settings):
    hose, drill, lamp, fryer = products
    events_from(["a"] * 50, fryer, kind="purchase")  # one shopper, however often
    events_from(["a", "b"], drill, kind="purchase")
    events_from(["a", "b", "c"], hose, kind="click")
    events_from(["a"], hose, kind="purchase")  # one purchase among three clicks: a click
    events_from(["a", "b", "c"], lamp, kind="impression")
    assert verified_grades() == {"garden hose": {str(hose.pk): 1.0, str(lamp.pk): 0.0}}
    with shopper_choices("garden hose") as choices:
        assert choices([str(p.pk) for p in products]) == {str(hose.pk): "chosen"}
    assert most_chosen_products(10) == [str(hose.pk)]
    events_from(["b", "c"], hose, kind="purchase")
    with shopper_choices("garden hose") as choices:
        assert choices([str(hose.pk)]) == {str(hose.pk): "bought"}
    assert verified_grades()["garden hose"][str(hose.pk)] == 3.0
    settings.SHOPGUIDE = {**settings.SHOPGUIDE, "MIN_SHOPPERS": 1}
    assert verified_grades()["garden hose"][str(fryer.pk)] == 3.0


def test_tokens_minted_on_one_network_weigh_as_one_shopper(products):
    for address in ("203.0.113.5", "203.0.113.66", "203.0.113.200"):  # one /24: one household or one host
        shopper = shopper_headers(address)
        for query in ("garden hose", "hose"):
            assert post(click(products[3], query=query), **shopper).status_code == 201
    assert SearchEvent.objects.values("session").distinct().count() == 3  # three shoppers ...
    assert verified_grades() == {}  # ... weighed as one
    for address in ("198.51.100.5", "192.0.2.5"):
        post(click(products[3]), **shopper_headers(address))
    assert verified_grades() == {"garden hose": {str(products[3].pk): 1.0}}


@needs_torch  # training's side of the events
def test_the_exam_is_set_by_explicit_judgments_and_events_never_grade_it(products):
    from shopguide.training import gather_data

    hose, drill, lamp, fryer = products
    queries = [f"query {n}" for n in range(30)]
    for query in queries[:20]:
        Judgment.objects.create(query=query, product_key=str(hose.pk), grade=2)
    for query in queries[10:]:  # shoppers agree on the fryer for half the judged queries and for 10 more
        events_from(["a", "b", "c"], fryer, kind="purchase", query=query)
    data, cold_start, sources = gather_data(0.5)
    assert not cold_start and sources["heldout_from"] == "explicit judgments"
    assert set(data.heldout_queries) <= set(queries[:20]) and len(data.heldout_queries) == 10
    for query in data.heldout_queries:
        assert data.judgments[query] == {str(hose.pk): 2}  # graded by the judgment alone
    for query in set(queries[10:20]) - set(data.heldout_queries):
        assert data.judgments[query] == {str(hose.pk): 2, str(fryer.pk): 3.0}
    assert set(data.train_queries) == set(queries) - set(data.heldout_queries)

    Judgment.objects.all().delete()
    events_from(["a", "b"], drill, kind="purchase", query="two shoppers only")
    data, _, sources = gather_data(0.5)
    assert sources["heldout_from"] == "judgments and shopper events"
    assert set(data.train_queries) | set(data.heldout_queries) == set(queries[10:])


def test_one_request_renders_one_token(products):
    request = RequestFactory().get("/")
    assert shopper_token(request) == shopper_token(request)
    assert signing.loads(shopper_token(request), salt=TOKEN_SALT)["v"] == voter_for_request(request)
