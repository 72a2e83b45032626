import importlib.util
import os
import subprocess

import pytest

# A serving install has no torch (``.ci/package`` runs the ``serving`` tests in one): training,
# which their shops need first, then runs in SHOPGUIDE_TRAINING_PYTHON, an interpreter with the
# training extra, as it runs on a worker.
HAS_TORCH = importlib.util.find_spec("torch") is not None
TRAINING_PYTHON = os.environ.get("SHOPGUIDE_TRAINING_PYTHON")
needs_torch = pytest.mark.skipif(not HAS_TORCH, reason="needs torch (the training extra)")


@pytest.fixture(autouse=True)
def fresh_response_cache():
    """Each test starts without the API's in-process answers of an earlier one."""
    from shopguide.api import responses

    responses.clear()


@pytest.fixture
def staff_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("staff", "staff@example.com", "pw")
    client.force_login(user)
    return client


@pytest.fixture
def eager_celery():
    """Tasks run in the calling process (unit tests; the worker tests use a real worker)."""
    from config.celery import app as celery_app

    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


def shopper_headers(address="192.0.2.10"):
    """Request arguments of a shopper on ``address`` holding the token a shop page would give
    them (``client.post(..., **shopper_headers())``)."""
    from django.test import RequestFactory

    from shopguide.shoppers import shopper_token

    return {
        "HTTP_X_SHOPGUIDE_TOKEN": shopper_token(RequestFactory().get("/", REMOTE_ADDR=address)),
        "REMOTE_ADDR": address,
    }


def heldout_slang(holdout_share):
    """The slang words a training with ``holdout_share`` holds out (the split is stable)."""
    from shopguide.splits import split_queries
    from tests.slang_shop import SLANG

    return split_queries(sorted(SLANG), holdout_share)[1]


def pytest_configure(config):
    # Two torch threads stall when another process is busy; tests use one.
    if HAS_TORCH:
        import torch

        torch.set_num_threads(1)


def train(*options):
    """``shopguide_train --sync *options`` on the test database: in this process, or where torch
    is not installed, in SHOPGUIDE_TRAINING_PYTHON (a worker's install) on the same database and
    MEDIA_ROOT."""
    from django.conf import settings
    from django.core.management import call_command

    from tests.test_worker import ROOT, database_url

    if HAS_TORCH:
        call_command("shopguide_train", "--sync", *options, verbosity=0)
        return
    if not TRAINING_PYTHON:
        pytest.skip("training needs torch: set SHOPGUIDE_TRAINING_PYTHON to a Python with the training extra")
    env = dict(os.environ, DATABASE_URL=database_url(), MEDIA_ROOT=str(settings.MEDIA_ROOT), TORCH_THREADS="1")
    done = subprocess.run(
        [TRAINING_PYTHON, "manage.py", "shopguide_train", "--sync", *options, "--verbosity", "0"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr


def trained_slang_shop(django_db_blocker, tmp_path_factory):
    """A slang shop with a version trained on it, rescored and serving; built once per module
    (training takes seconds) and removed afterwards. Yields ``{product id: Product}``."""
    from django.test import override_settings

    from catalog.models import Product
    from shopguide import models as sg
    from shopguide.serving import ServingIndex
    from tests.slang_shop import PRODUCTS, SLANG

    with override_settings(MEDIA_ROOT=tmp_path_factory.mktemp("media")), django_db_blocker.unblock():
        products = {pid: Product.objects.create(external_id=pid, title=title) for pid, title in PRODUCTS.items()}
        for word, pid in SLANG.items():
            sg.Judgment.objects.create(query=word, product_key=str(products[pid].pk), grade=2, source="imported")
        train("--epochs", "6", "--no-reranker", "--holdout", "0.25", "--activate")
        ServingIndex.reset()
        try:
            yield products
        finally:
            ServingIndex.reset()
            empty_the_shop()


def empty_the_shop():
    """Delete what a module's shop fixture committed: shopguide's rows and the demo's catalogue."""
    from catalog.models import Brand, Category, Product
    from shopguide import models as sg

    for model in (
        sg.ProductVector,
        sg.PendingVector,
        sg.Rescore,
        sg.TrainingRun,
        sg.RecommenderModel,
        sg.Judgment,
        sg.SearchEvent,
        sg.ServingState,
        sg.QueryRule,
        Product,
        Category,
        Brand,
    ):
        model.objects.all().delete()
