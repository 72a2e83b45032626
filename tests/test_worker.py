"""The Celery pipeline with a real worker process, a real broker (Redis) and real PostgreSQL:
retrain from the admin, rescore, serve; a killed worker; a second request while one runs."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection
from django.test import Client
from django.urls import reverse

from catalog.models import Product
from config.celery import app as celery_app
from shopguide import operations
from shopguide.models import Judgment, PendingVector, ProductVector, RecommenderModel, TrainingRun
from shopguide.services import recommend
from shopguide.serving import ServingIndex
from shopguide.versions import active_model
from tests.conftest import heldout_slang
from tests.slang_shop import PRODUCTS, SLANG

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def database_url():
    config = connection.settings_dict
    host = config["HOST"] or "localhost"
    if host.startswith("/"):
        return f"postgresql://{config['USER']}:{config['PASSWORD']}@/{config['NAME']}?host={host}"
    return f"postgresql://{config['USER']}:{config['PASSWORD']}@{host}:{config['PORT'] or 5432}/{config['NAME']}"


class Worker:
    """A `celery worker` process on the test database and the test's broker."""

    def __init__(self, media_root, log_path):
        self.env = dict(
            os.environ,
            DATABASE_URL=database_url(),
            CELERY_BROKER_URL=celery_app.conf.broker_url,
            MEDIA_ROOT=str(media_root),
            TORCH_THREADS="1",
            PYTHONUNBUFFERED="1",
        )
        self.log_path = log_path
        self.process = None

    def start(self):
        self.log = open(self.log_path, "a")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "config",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                "1",
                "--hostname",
                "shopguide-test@%h",
                "--queues",
                "celery,shopguide_training,shopguide_rescore",
            ],
            cwd=ROOT,
            env=self.env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        wait_until(lambda: "ready." in Path(self.log_path).read_text(), 120, "the worker to start", self)

    def kill(self):
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self):
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()
        self.log.close()


def wait_until(condition, timeout, what, worker=None, every=1.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(every)
    log = Path(worker.log_path).read_text()[-3000:] if worker else ""
    pytest.fail(f"timed out after {timeout}s waiting for {what}\n{log}")


def purge_queues():
    with celery_app.connection_for_write() as broker:
        for queue in ("celery", "shopguide_training", "shopguide_rescore"):
            broker.default_channel.queue_purge(queue)


@pytest.fixture
def shop(settings, tmp_path, django_user_model):
    settings.MEDIA_ROOT = tmp_path / "media"
    purge_queues()  # messages left by earlier tests
    ServingIndex.reset()
    products = {pid: Product.objects.create(external_id=pid, title=title) for pid, title in PRODUCTS.items()}
    for word, pid in SLANG.items():
        Judgment.objects.create(query=word, product_key=str(products[pid].pk), grade=2)
    Product.objects.create(external_id="gone", title="Garden hose reel, out of stock", in_stock=False)
    staff = django_user_model.objects.create_superuser("staff", "staff@example.com", "pw")
    return products, staff


@pytest.fixture
def worker(shop, tmp_path, settings):
    worker = Worker(settings.MEDIA_ROOT, tmp_path / "worker.log")
    worker.start()
    yield worker
    worker.stop()


def staff_client(staff):
    client = Client()
    client.force_login(staff)
    return client


def retrain(client):
    return client.post(reverse("admin:shopguide_recommendermodel_retrain"), follow=True)


def test_retrain_from_the_admin_trains_rescores_and_serves(shop, worker):
    products, staff = shop
    before = recommend("zorblax", limit=3)  # no version: full-text search knows no slang
    assert {rec.reason for rec in before} == {"popular in this shop"}

    response = retrain(staff_client(staff))
    assert response.status_code == 200
    run = TrainingRun.objects.get()
    assert f">#{run.pk}</a> queued." in response.text and run.started_by == staff

    wait_until(lambda: TrainingRun.objects.get().status in ("succeeded", "failed"), 300, "training", worker)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert run.worker.startswith("shopguide-test@") and run.loss_curve["training retriever"]
    wait_until(lambda: active_model() is not None, 120, "the new version to serve", worker)

    model = RecommenderModel.objects.get()
    assert model.is_active and run.model == model
    available = {str(product.pk) for product in products.values()}
    assert set(ProductVector.objects.values_list("product_key", flat=True)) == available
    trained = [word for word in SLANG if word not in heldout_slang(0.1)]
    first = {word: recommend(word, limit=3)[0].product.external_id for word in trained}
    hits = sum(first[word] == SLANG[word] for word in trained)
    assert hits >= len(trained) - 1, first  # before training: nothing at all

    # Saving or deleting a product refreshes just that product's vector, after the commit.
    new = Product.objects.create(external_id="p9", title="Folding camping chair with cup holder")
    wait_until(lambda: ProductVector.objects.filter(product_key=str(new.pk)).exists(), 60, "the new product", worker)
    deleted_key = str(products["p2"].pk)
    products["p2"].delete()
    wait_until(
        lambda: not ProductVector.objects.filter(product_key=deleted_key).exists(),
        60,
        "the deleted product to go",
        worker,
    )
    assert ProductVector.objects.count() == len(PRODUCTS)


def test_a_killed_worker_leaves_the_run_failed_and_nothing_changed(shop, worker):
    operations.train({"epochs": 200})  # long enough to be killed while it trains
    wait_until(lambda: TrainingRun.objects.get().stage == "training retriever", 240, "training to start", worker)
    worker.kill()
    worker.start()  # a restarted worker marks what it was running as failed
    wait_until(lambda: TrainingRun.objects.get().status == "failed", 60, "the run to be marked failed", worker)
    assert "worker stopped" in TrainingRun.objects.get().error
    assert not RecommenderModel.objects.exists() and active_model() is None


def test_a_second_retrain_is_refused_while_one_runs(shop):
    _, staff = shop
    client = staff_client(staff)
    retrain(client)
    response = retrain(client)
    assert "already queued or running" in response.text
    assert TrainingRun.objects.count() == 1


def test_a_worker_killed_during_a_rescore_leaves_the_old_vectors_serving(shop, tmp_path, settings):
    from django.core.management import call_command

    from shopguide.models import Rescore
    from shopguide.tasks import rescore

    products, _ = shop
    # Enough chunks that the worker cannot finish them all between two looks (a chunk of 8
    # takes milliseconds in bfloat16).
    Product.objects.bulk_create(
        Product(external_id=f"f{n}", title=f"Filler product number {n} for chunks") for n in range(1000)
    )
    call_command(
        "shopguide_train", "--sync", "--epochs", "3", "--no-reranker", "--holdout", "0.25", "--activate", verbosity=0
    )
    model = active_model()
    word = next(word for word in SLANG if word not in heldout_slang(0.25))
    serving = dict(ProductVector.objects.values_list("product_key", "updated_at"))
    first = recommend(word, limit=1)[0].product

    settings.SHOPGUIDE = {**settings.SHOPGUIDE, "RESCORE_CHUNK_SIZE": 8}
    purge_queues()  # the refreshes the products' creation queued: not this test's subject
    worker = Worker(settings.MEDIA_ROOT, tmp_path / "rescore-worker.log")
    worker.start()
    try:
        rescore.apply(args=[model.pk, False, False])  # chunks go to the worker
        job = Rescore.objects.latest("pk")
        wait_until(lambda: len(Rescore.objects.get(pk=job.pk).done_chunks) >= 3, 120, "some chunks", worker, every=0.05)
        worker.kill()
        job.refresh_from_db()
        assert job.status == "running" and len(job.done_chunks) < job.chunks
        assert dict(ProductVector.objects.values_list("product_key", "updated_at")) == serving  # untouched
        ServingIndex.reset()
        assert recommend(word, limit=1)[0].product == first

        worker.start()
        rescore.apply(args=[model.pk, False, False])  # run it again: it completes
        again = Rescore.objects.latest("pk")
        wait_until(lambda: Rescore.objects.get(pk=again.pk).status == "succeeded", 180, "the rescore", worker)
    finally:
        worker.stop()
    assert Rescore.objects.get(pk=job.pk).status == "failed"  # superseded, its pending rows gone
    assert not PendingVector.objects.exists()
    vectors = dict(ProductVector.objects.values_list("product_key", "updated_at"))
    assert set(vectors) == set(serving) and all(vectors[key] > serving[key] for key in serving)
    ServingIndex.reset()
    assert recommend(word, limit=1)[0].product == first
