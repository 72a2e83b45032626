"""What a stranger can make the public endpoints do, and how cheaply: sign-in attempts, odd
bodies, spoofed addresses, floods, long words. Real PostgreSQL and the demo's caches."""

import base64
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from django.contrib.sessions.models import Session
from django.core.cache import caches
from django.test import Client

from catalog.models import Product
from shopguide.ml.spelling import Speller
from shopguide.models import SearchEvent
from shopguide.services import cache_key
from tests.conftest import shopper_headers

pytestmark = pytest.mark.serving

ROOT = Path(__file__).resolve().parent.parent
RECOMMENDATIONS = "/api/shopguide/recommendations/"
EVENTS = "/api/shopguide/events/"


@pytest.fixture
def products(db):
    caches["default"].clear()
    caches["throttle"].clear()
    return [
        Product.objects.create(external_id=f"p{i}", title=title)
        for i, title in enumerate(
            ["Garden hose, 50 ft", "Cordless drill", "Desk lamp", "Hose reel cart", "Drill bit set"]
        )
    ]


def event(product, kind="click", query="garden hose"):
    return {"query": query, "product": product.external_id, "event": kind}


def basic(username, password):
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def assert_error(response, status, code=None):
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert error["status"] == status and (code is None or error["code"] == code), error


def test_http_basic_credentials_are_neither_checked_nor_accepted(products, django_user_model):
    django_user_model.objects.create_superuser("boss", "boss@example.com", "right-password")
    # Public: wrong credentials are not even looked at (no password hashing for strangers).
    answer = Client().get(
        RECOMMENDATIONS, {"q": "hose", "exclude": products[0].external_id}, HTTP_AUTHORIZATION=basic("boss", "wrong")
    )
    assert answer.status_code == 200 and answer.json()["results"]
    # Staff endpoints take the shop's session only: right credentials over Basic get nowhere.
    assert_error(Client().get("/api/shopguide/models/", HTTP_AUTHORIZATION=basic("boss", "right-password")), 403)


def test_staff_endpoints_need_the_models_view_permission(products, django_user_model):
    clerk = django_user_model.objects.create_user("clerk", password="pw", is_staff=True)
    client = Client()
    client.force_login(clerk)
    assert_error(client.get("/api/shopguide/models/"), 403)
    assert_error(client.get("/api/shopguide/training-runs/"), 403)
    clerk.user_permissions.add(Permission.objects.get(codename="view_recommendermodel"))
    client.force_login(django_user_model.objects.get(pk=clerk.pk))  # permissions are cached per user object
    assert client.get("/api/shopguide/models/").status_code == 200
    assert_error(client.get("/api/shopguide/training-runs/"), 403)


@pytest.mark.parametrize(
    "content_type, body",
    [
        ("application/x-www-form-urlencoded", "query=garden+hose&product=1&event=click"),
        (
            "multipart/form-data; boundary=xx",
            '--xx\r\nContent-Disposition: form-data; name="query"\r\n\r\nhose\r\n--xx--\r\n',
        ),
        ("text/plain", '{"query": "hose", "product": "1", "event": "click"}'),
    ],
)
def test_events_are_taken_as_json_only(products, content_type, body):
    assert_error(Client().post(EVENTS, body, content_type=content_type), 403, "no_shopper_token")
    response = Client().post(EVENTS, body, content_type=content_type, **shopper_headers())
    assert_error(response, 415, "unsupported_media_type")
    assert not SearchEvent.objects.exists()


def test_deeply_nested_json_and_oversize_bodies_are_refused_in_the_error_shape(products):
    shopper = shopper_headers()
    nested = "[" * 100_000 + "]" * 100_000
    assert_error(Client().post(EVENTS, nested, content_type="application/json", **shopper), 400, "parse_error")
    huge = json.dumps([event(products[0], query="x" * 250)] * 600)  # about 160 kB
    assert_error(Client().post(EVENTS, huge, content_type="application/json", **shopper), 400, "parse_error")
    assert not SearchEvent.objects.exists()


def test_the_throttle_counts_events_per_connection_whatever_the_headers_say(products, settings):
    settings.SHOPGUIDE = {**settings.SHOPGUIDE, "EVENTS_RATE": "10/min"}
    client, shopper = Client(), shopper_headers()
    statuses = [
        client.post(
            EVENTS,
            [event(products[0])] * 4,
            content_type="application/json",
            HTTP_X_FORWARDED_FOR=f"203.0.113.{i}",
            **shopper,
        ).status_code
        for i in range(4)
    ]
    assert statuses == [201, 201, 429, 429]  # 4 + 4 events, then 4 more would make 12 > 10
    assert client.post(EVENTS, [event(products[0])] * 2, content_type="application/json", **shopper).status_code == 201
    assert SearchEvent.objects.count() == 10
    assert_error(client.post(EVENTS, event(products[0]), content_type="application/json", **shopper), 429, "throttled")


def test_behind_the_shops_own_proxy_the_client_is_what_the_proxy_saw(products, settings):
    settings.SHOPGUIDE = {**settings.SHOPGUIDE, "EVENTS_RATE": "1/min", "PROXY_COUNT": 1}
    shopper = shopper_headers()
    for client_address in ("198.51.100.7", "198.51.100.8"):  # the proxy appends the address it saw
        forwarded = f"10.0.0.1, {client_address}"  # whatever the client claimed, then the proxy's entry
        response = Client().post(
            EVENTS, event(products[0]), content_type="application/json", HTTP_X_FORWARDED_FOR=forwarded, **shopper
        )
        assert response.status_code == 201
    response = Client().post(
        EVENTS,
        event(products[0]),
        content_type="application/json",
        HTTP_X_FORWARDED_FOR="10.0.0.2, 198.51.100.7",
        **shopper,
    )
    assert response.status_code == 429


def test_cached_recommendations_survive_a_flood_of_throttled_clients(products, settings):
    settings.SHOPGUIDE = {**settings.SHOPGUIDE, "EVENTS_RATE": "1/min"}
    queries = [f"hose {i}" for i in range(40)]
    client = Client()
    for query in queries:
        assert client.get(RECOMMENDATIONS, {"q": query, "exclude": "x"}).status_code == 200
    assert all(caches["default"].get(cache_key(query)) for query in queries)
    token = shopper_headers()["HTTP_X_SHOPGUIDE_TOKEN"]
    for i in range(5_000):  # each a client of its own to the throttle, which keeps a counter for each
        client.post(
            EVENTS,
            "{}",
            content_type="application/json",
            HTTP_X_SHOPGUIDE_TOKEN=token,
            REMOTE_ADDR=f"10.{i // 250}.{i % 250}.1",
        )
    assert caches["throttle"].get("throttle_shopguide_events_10.19.249.1")
    assert all(caches["default"].get(cache_key(query)) for query in queries)


def test_a_long_word_is_not_looked_up_for_spelling():
    speller = Speller(["cordless drill", "cordless saw", "garden hose", "garden hoses"])
    probed = []
    speller.candidates = lambda word, deletions: probed.append(word) or set()
    assert speller.correct("cordlessdrillzzz " + "q" * 250, lambda word: 0) == "cordlessdrillzzz " + "q" * 250
    assert probed == []  # longer than the longest catalogue word + 2: no candidates generated
    speller.correct("gardn", lambda word: 0)
    assert probed == ["gardn"]


def test_a_shopper_without_a_session_gets_none_for_browsing(products):
    client = Client()
    assert client.get(products[0].get_absolute_url(), {"q": "garden hose"}).status_code == 200
    assert not Session.objects.exists() and "sessionid" not in client.cookies


def test_a_nul_character_in_the_demo_search_is_no_server_error(products):
    assert Client().get("/search/", {"q": "gar\x00den hose"}).status_code == 200


def test_the_demo_passes_the_deployment_checks_behind_https(products):
    production = {
        name: value for name, value in os.environ.items() if name != "DJANGO_ALLOW_ASYNC_UNSAFE"
    }  # browser tests
    env = dict(
        production,
        DEBUG="0",
        HTTPS="1",
        HSTS_INCLUDE_SUBDOMAINS="1",
        HSTS_PRELOAD="1",
        SECRET_KEY="k" * 20 + "-deployment-check-" + "x" * 30,
        ALLOWED_HOSTS="shop.example.com",
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_documents_every_answer_and_both_event_bodies(client, products):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    paths = schema["paths"]
    answers = {
        path: set(operations[method]["responses"])
        for path, operations in paths.items()
        for method in operations
        if method in ("get", "post")
    }
    assert answers["/api/shopguide/recommendations/"] == {"200", "400", "429"}
    assert answers["/api/shopguide/events/"] == {"201", "400", "403", "415", "429"}
    assert answers["/api/shopguide/models/"] == {"200", "403"}
    assert answers["/api/shopguide/models/{version}/"] == {"200", "403", "404"}
    error = paths["/api/shopguide/events/"]["post"]["responses"]["429"]["content"]["application/json"]["schema"]
    assert error["$ref"].endswith("/Error")
    body = paths["/api/shopguide/events/"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    shapes = body.get("oneOf") or schema["components"]["schemas"][body["$ref"].rsplit("/", 1)[1]]["oneOf"]
    assert sorted(shape.get("type", "object") for shape in shapes) == ["array", "object"]
