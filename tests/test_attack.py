"""The attack on the learning loop, replayed on the demo catalogue with a real worker, broker
and PostgreSQL: strangers' forged and cross-site events are refused, one shopper flooding
clicks teaches nothing, and the same clicks from enough shoppers on other networks do teach."""

import json
import re
import shutil

import pytest
from django.core.cache import caches
from django.core.management import call_command
from django.test import Client

from catalog.models import Product
from shopguide import operations
from shopguide.models import RecommenderModel, SearchEvent, TrainingRun
from shopguide.services import recommend
from shopguide.serving import ServingIndex
from shopguide.versions import active_model
from tests.test_worker import ROOT, Worker, purge_queues, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

EVENTS = "/api/shopguide/events/"
# Searches for sofas, none of which an air fryer answers.
SOFA_QUERIES = [
    "sofa", "couch", "comfy sofa", "sectional couch", "loveseat", "3 seat sofa", "linen sofa",
    "velvet loveseat", "chesterfield", "settee", "sofa bed", "grey couch", "leather sofa", "small sofa",
    "living room couch", "modern sofa", "outdoor sofa", "wicker sofa", "couch for den", "teal loveseat",
    "two seater sofa", "l shaped couch", "sectional with chaise", "oatmeal sofa", "sofa for living room",
    "deep seat sofa", "family couch", "apartment sofa", "cheap couch", "big comfy couch",
]  # fmt: skip
QUICK = {"epochs": 1, "max_pairs": 16, "reranker": False}  # a short training: the data is the subject


@pytest.fixture
def demo_catalogue(settings, tmp_path):
    """The demo shop's products, with no judgments and no events: what it learns, it learns
    from the shoppers below."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.SHOPGUIDE = {**settings.SHOPGUIDE, "EVENTS_RATE": "1000/min"}
    caches["throttle"].clear()
    purge_queues()
    ServingIndex.reset()
    folder = tmp_path / "demo"
    folder.mkdir()
    shutil.copy(ROOT / "catalog" / "demo_data" / "products.csv", folder)
    call_command("load_catalog", str(folder), verbosity=0)
    worker = Worker(settings.MEDIA_ROOT, tmp_path / "worker.log")
    worker.start()
    yield Product.objects.get(external_id="DS-0002")  # the air fryer
    worker.stop()


def page_token(address):
    """The shopper token a search page renders for a shopper on ``address``."""
    page = Client(REMOTE_ADDR=address).get("/search/", {"q": "sofa"}).text
    return re.search(r'data-shopguide-token="([^"]+)"', page).group(1)


def post(body, token=None, content_type="application/json", **headers):
    if token:
        headers["HTTP_X_SHOPGUIDE_TOKEN"] = token
    data = json.dumps(body) if content_type == "application/json" else body
    return Client().post(EVENTS, data, content_type=content_type, **headers)


def flood(token, key, clicks_per_query=5):
    events = [{"query": query, "product": key, "event": "click"} for query in SOFA_QUERIES] * clicks_per_query
    for start in range(0, len(events), 50):
        assert post(events[start : start + 50], token).status_code == 201


def retrain_and_settle(worker_log):
    run = operations.train(QUICK)
    wait_until(lambda: TrainingRun.objects.get(pk=run.pk).status in ("succeeded", "failed"), 300, "training")
    run.refresh_from_db()
    assert run.status == "succeeded", run.error + worker_log.read_text()[-3000:]
    model = run.model
    wait_until(lambda: RecommenderModel.objects.get(pk=model.pk).activation, 120, "the activation verdict")
    model.refresh_from_db()
    if "Not activated" not in model.activation:
        wait_until(lambda: (active_model() or model).version == model.version, 180, "the version to serve")
    ServingIndex.reset()
    return model


def fryer_places(key):
    """Where the fryer stands in each sofa search's top 10 (None: not there), freshly ranked."""
    caches["default"].clear()
    places = {}
    for query in SOFA_QUERIES:
        keys = [item.key for item in recommend(query, limit=10)]
        places[query] = keys.index(key) if key in keys else None
    return places


def test_a_stranger_cannot_steer_what_the_shop_learns(demo_catalogue, tmp_path):
    key, public_id = str(demo_catalogue.pk), demo_catalogue.external_id
    click = {"query": "sofa", "product": public_id, "event": "click"}
    token = page_token("203.0.113.9")

    # The cheap tricks: nothing is stored.
    assert post({**click, "event": "purchase"}, token).status_code == 400  # purchases come from the server
    for address in ("10.0.0.1", "10.0.0.2"):
        assert post(click, HTTP_X_FORWARDED_FOR=address).status_code == 403  # no token
    assert post(click, "forged.token.value").status_code == 403
    form = "query=sofa&event=click&product=" + public_id
    assert post(form, token, "application/x-www-form-urlencoded").status_code == 415
    assert post(click, token, HTTP_ORIGIN="https://elsewhere.example").status_code == 403
    assert post(click, token, HTTP_SEC_FETCH_SITE="cross-site").status_code == 403
    assert not SearchEvent.objects.exists()

    # One shopper floods clicks on the air fryer for 30 sofa searches, then the shop retrains.
    flood(token, public_id)
    assert SearchEvent.objects.count() == 5 * len(SOFA_QUERIES)
    first = retrain_and_settle(tmp_path / "worker.log")
    assert first.data_counts["event_pairs"] == 0 and first.hyperparameters["cold_start"]
    places = fryer_places(key)
    assert all(place is None for place in places.values()), places
    assert not any("often" in item.reason for query in SOFA_QUERIES for item in recommend(query, limit=10))

    # Two more shoppers, on networks of their own, click the same: now three shoppers agree.
    for address in ("198.51.100.9", "192.0.2.9"):
        flood(page_token(address), public_id, clicks_per_query=1)
    second = retrain_and_settle(tmp_path / "worker.log")
    assert second.data_counts["event_pairs"] == len(SOFA_QUERIES)
    assert second.data_counts["heldout_from"] == "judgments and shopper events"
    assert active_model() == second, second.activation
    places = fryer_places(key)
    assert all(place is not None for place in places.values()), places
    query = SOFA_QUERIES[0]
    assert recommend(query, limit=10)[places[query]].reason == f"often chosen by shoppers who searched “{query}”"
