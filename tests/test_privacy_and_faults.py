"""Security and faults with the real parts: forgetting a user, CSRF, the database connection
lost mid-request, the broker down, a version whose files changed."""

import shutil

import pytest
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection
from django.test import Client

from catalog.models import Product, SearchLog
from config.celery import app as celery_app
from shopguide.models import InterleavedList, OnlineComparison, RecommenderModel, SearchEvent, TrainingRun
from shopguide.services import recommend, record_purchase
from shopguide.serving import ServingIndex
from shopguide.shoppers import read_token, shopper_id_for
from tests.conftest import shopper_headers, trained_slang_shop
from tests.slang_shop import SLANG


@pytest.mark.django_db
def test_forget_user_deletes_their_events_and_search_history(django_user_model):
    product = Product.objects.create(external_id="x1", title="Cordless drill")
    Product.objects.create(external_id="x2", title="Drill bit set")
    user = django_user_model.objects.create_user("ann", password="pw")
    client = Client()
    client.force_login(user)
    client.get("/search/", {"q": "drill"})
    key = client.session.session_key
    assert SearchLog.objects.filter(session_key=key).exists()
    page = client.get(f"/product/{product.pk}/", {"q": "drill"}).content.decode()
    token = page.split('data-shopguide-token="', 1)[1].split('"', 1)[0]
    assert read_token(token).id == shopper_id_for(key) and key not in page
    event = {"query": "drill", "product": product.external_id, "event": "click"}
    assert client.post("/api/shopguide/events/", event, content_type="application/json", HTTP_X_SHOPGUIDE_TOKEN=token)
    client.post(f"/product/{product.pk}/buy/", {"q": "drill"})  # recorded by the shop's server
    record_purchase(product, user=user, query="drill")  # by a payment provider's callback
    for session in (shopper_id_for("someone-else"), ""):
        SearchEvent.objects.create(
            query="drill", product_key=str(product.pk), event="click", session=session, created_at="2026-11-01T00:00Z"
        )
    assert SearchEvent.objects.count() == 5
    Client().get("/search/", {"q": "hose"})  # another shopper's search
    versions = [RecommenderModel.objects.create(version=n, base_model="m", artifact_path=f"v{n}") for n in (1, 2)]
    comparison = OnlineComparison.objects.create(candidate=versions[1], serving=versions[0])
    for session in (shopper_id_for(key), shopper_id_for("someone-else")):
        InterleavedList.objects.create(comparison=comparison, session=session, voter="v", query_norm="drill", teams={})

    call_command("shopguide_forget_user", "ann", verbosity=0)
    assert SearchEvent.objects.count() == 2 and not SearchEvent.objects.filter(session=shopper_id_for(key)).exists()
    assert list(InterleavedList.objects.values_list("session", flat=True)) == [shopper_id_for("someone-else")]
    assert list(SearchLog.objects.values_list("query", flat=True)) == ["hose"]


@pytest.mark.django_db
def test_session_authenticated_writes_need_the_csrf_token(django_user_model):
    staff = django_user_model.objects.create_superuser("boss", "boss@example.com", "pw")
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    assert client.post("/admin/shopguide/recommendermodel/retrain/").status_code == 403
    assert not TrainingRun.objects.exists()
    upload = client.post("/admin/shopguide/judgment/upload/", {})
    assert upload.status_code == 403


@pytest.mark.django_db(transaction=True)
def test_a_lost_database_connection_is_a_503_with_a_retry_hint():
    client = Client()
    client.get("/healthz/")
    connection.ensure_connection()
    with connection.cursor() as cursor:  # the server ends this very connection, as a restart would
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    import psycopg

    settings_dict = connection.settings_dict
    with psycopg.connect(
        dbname=settings_dict["NAME"],
        user=settings_dict["USER"],
        password=settings_dict["PASSWORD"],
        host=settings_dict["HOST"] or None,
        port=settings_dict["PORT"] or None,
        autocommit=True,
    ) as other:
        other.execute("SELECT pg_terminate_backend(%s)", [pid])
    response = client.get("/api/shopguide/recommendations/", {"q": "drill"})
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert response.json()["error"]["code"] == "database_unavailable"
    assert client.get("/api/shopguide/recommendations/", {"q": "drill"}).status_code == 200  # reconnected


@pytest.mark.django_db
def drop_broker_connections():
    """Make the app look its broker connection up again (kombu keeps one pool per URL)."""
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@pytest.fixture
def broker_down():
    """The broker is gone: nothing listens where the app sends its messages."""
    url = celery_app.conf.broker_url
    drop_broker_connections()
    celery_app.conf.broker_url = "redis://127.0.0.1:1/0"
    yield
    drop_broker_connections()
    celery_app.conf.broker_url = url


def test_with_the_broker_down_pages_serve_events_store_and_training_says_why(django_user_model, broker_down):
    product = Product.objects.create(external_id="x1", title="Cordless drill")
    client = Client()
    assert client.get("/search/", {"q": "drill"}).status_code == 200
    body = client.get("/api/shopguide/recommendations/", {"q": "drill"}).json()
    assert body["results"][0]["product"] == product.external_id
    event = {"query": "drill", "product": product.external_id, "event": "click"}
    response = client.post("/api/shopguide/events/", event, content_type="application/json", **shopper_headers())
    assert response.status_code == 201 and SearchEvent.objects.count() == 1
    Product.objects.filter(pk=product.pk).update(title="Cordless drill, 18 V")
    product.refresh_from_db()
    product.save()  # the refresh cannot be queued: logged, the save stands

    staff = django_user_model.objects.create_superuser("boss", "boss@example.com", "pw")
    client.force_login(staff)
    response = client.post("/admin/shopguide/recommendermodel/retrain/", follow=True)
    assert "Training could not be queued: The task queue cannot be reached" in response.content.decode()
    run = TrainingRun.objects.get()
    assert run.status == "failed" and "cannot be reached" in run.error  # and it blocks no later request


shop = pytest.fixture(scope="module")(trained_slang_shop)


@pytest.fixture
def served(shop, db):
    ServingIndex.reset()
    cache.clear()
    yield shop
    ServingIndex.reset()


def test_a_version_whose_files_changed_stops_serving_and_the_admin_says_why(served, staff_client, settings, caplog):
    word = next(iter(SLANG))
    model = RecommenderModel.objects.get(is_active=True)
    backup = settings.MEDIA_ROOT / "backup"
    shutil.copytree(model.folder, backup)
    try:
        (model.folder / "ranker.json").write_text("{}")  # tampered
        ServingIndex.reset()
        results = recommend("garden hose")
        assert results and results[0].reason.startswith("matches words of")  # full-text search serves
        assert f"The active version {model.version} cannot serve" in caplog.text
        page = staff_client.get(f"/admin/shopguide/recommendermodel/{model.pk}/change/").content.decode()
        assert "was changed after training" in page and "fallen back to full-text search" in page
    finally:
        shutil.rmtree(model.folder)
        shutil.copytree(backup, model.folder)
    ServingIndex.reset()
    assert recommend(word)[0].reason != "matches words of"


BROKEN_CACHE = {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "no_such_cache_table"}


@pytest.mark.django_db  # inside a transaction, as with ATOMIC_REQUESTS: the cache must not abort it
def test_a_failing_cache_is_logged_and_skipped(settings, caplog):
    Product.objects.create(external_id="x1", title="Zebrawood cutting board")
    ServingIndex.reset()
    cache.clear()
    expected = [item.product for item in recommend("zebrawood board")]
    api = Client().get("/api/shopguide/recommendations/", {"q": "zebrawood board"}).json()["results"]
    settings.CACHES = {**settings.CACHES, "default": BROKEN_CACHE}
    assert [item.product for item in recommend("zebrawood board")] == expected  # read and write both fail
    again = Client().get("/api/shopguide/recommendations/", {"q": "zebrawood board", "limit": 7}).json()
    assert again["results"][:1] == api[:1] and expected
    assert Product.objects.filter(external_id="x1").exists()  # the transaction is still usable
    assert "the 'default' cache failed (ProgrammingError" in caplog.text and "answering without it" in caplog.text


@pytest.mark.django_db(transaction=True)
def test_migrate_makes_the_demo_cache_tables():
    with connection.cursor() as cursor:
        cursor.execute("DROP TABLE shopguide_cache")
    call_command("migrate", "catalog", "0001", verbosity=0)
    call_command("migrate", "catalog", verbosity=0)  # what the README's manual path runs
    assert "shopguide_cache" in connection.introspection.table_names()
