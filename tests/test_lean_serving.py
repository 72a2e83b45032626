"""Web processes serve without torch: a trained version carries its query encoder as ONNX,
checked against torch by training, covered by the version's checksum, and a fresh process
answers recommendations with neither torch nor transformers imported."""

import json
import os
import subprocess
import sys

import pytest
from django.conf import settings

from shopguide.ml import version_files
from shopguide.ml.version_files import VersionFilesError, verify
from shopguide.models import RecommenderModel
from tests.conftest import heldout_slang, needs_torch, trained_slang_shop
from tests.slang_shop import SLANG
from tests.test_worker import ROOT, database_url

pytestmark = pytest.mark.serving

shop = pytest.fixture(scope="module")(trained_slang_shop)

SERVE = """
import json, sys


class NotInstalled:  # as in a serving-only install: torch and transformers cannot be imported
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("torch", "transformers"):
            raise ModuleNotFoundError(f"No module named {name!r}")


sys.meta_path.insert(0, NotInstalled())
import django
django.setup()
from django.test import Client
from shopguide.services import recommend
from shopguide.serving import ServingIndex

client = Client()
answers = {}
for word in sys.argv[1:]:
    response = client.get("/api/shopguide/recommendations/", {"q": word, "limit": 3})
    assert response.status_code == 200, response.content
    answers[word] = [item["product"] for item in response.json()["results"]]
unseen = [item.product.external_id for item in recommend("never searched before " + sys.argv[1], limit=2)]
encoder = type(ServingIndex.get().ranking.encoder).__name__
loaded = sorted(name for name in ("torch", "transformers") if name in sys.modules)
print(json.dumps({"answers": answers, "unseen": unseen, "encoder": encoder, "loaded": loaded}))
"""


@pytest.fixture
def version(shop, db):
    return RecommenderModel.objects.get(is_active=True)


def test_training_exports_the_query_encoder_and_records_its_check(version):
    report = version.query_encoder
    assert report["served"] is True, report
    assert report["min_cosine"] >= version_files.ONNX_MIN_COSINE
    assert report["checked"] >= len(SLANG)  # held-out and training queries, then titles
    assert abs(report["hybrid_ndcg@10_onnx"] - report["hybrid_ndcg@10"]) <= 0.002
    assert (version.folder / version_files.ONNX_FILE).is_file()


def test_the_onnx_file_is_part_of_the_checksum(version):
    path = version.folder / version_files.ONNX_FILE
    original = path.read_bytes()
    try:
        path.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
        with pytest.raises(VersionFilesError, match="changed after training"):
            verify(version.folder, version.checksum)
    finally:
        path.write_bytes(original)
    verify(version.folder, version.checksum)


def test_a_web_process_without_torch_installed_answers(version):
    words = [word for word in SLANG if word not in heldout_slang(0.25)]
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="config.settings",
        DATABASE_URL=database_url(),
        MEDIA_ROOT=str(settings.MEDIA_ROOT),
        TORCH_THREADS="1",
    )
    done = subprocess.run(
        [sys.executable, "-c", SERVE, *words], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["encoder"] == "OnnxEncoder" and result["loaded"] == []  # not full-text search
    assert {word: ids[0] for word, ids in result["answers"].items()} == {word: SLANG[word] for word in words}
    assert len(result["unseen"]) == 2


@needs_torch
def test_query_encoder_torch_serves_the_same_ranking_through_torch(version, settings):
    from shopguide.ml.encoder import Encoder
    from shopguide.ml.onnx_encoder import OnnxEncoder
    from shopguide.serving import ServingIndex

    queries = [*SLANG, "something to sit on", "a lamp for reading"]
    rankings = {}
    for choice in ("auto", "torch"):
        settings.SHOPGUIDE = {**settings.SHOPGUIDE, "QUERY_ENCODER": choice}  # resets the serving index
        index = ServingIndex.get()
        rankings[choice] = (type(index.ranking.encoder), [index.rank(query).keys for query in queries])
    ServingIndex.reset()
    assert rankings["auto"][0] is OnnxEncoder and rankings["torch"][0] is Encoder
    assert rankings["auto"][1] == rankings["torch"][1]


@needs_torch
def test_rescoring_encodes_with_torch_and_with_the_export_where_torch_is_missing(version, monkeypatch):
    import builtins

    from shopguide import rescoring
    from shopguide.ml.encoder import Encoder
    from shopguide.ml.onnx_encoder import OnnxEncoder

    rescoring._encoders.clear()
    assert type(rescoring.encoder_for(version)) is Encoder
    rescoring._encoders.clear()
    real_import = builtins.__import__

    def without_torch(name, *args, **kwargs):
        if name.partition(".")[0] == "torch":
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_torch)
    encoder = rescoring.encoder_for(version)
    monkeypatch.undo()
    rescoring._encoders.clear()
    assert type(encoder) is OnnxEncoder and encoder.encode(["a cordless drill"]).shape == (1, 384)


def test_a_serving_process_multiplies_on_one_blas_thread(version, settings):
    """OpenBLAS's idle threads spin for ~100 ms after each matrix product (the search memory's)
    and take a core from the requests that follow: a process that serves uses one."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from shopguide.serving import ServingIndex

    def blas_threads():
        return {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}

    with threadpool_limits(2, user_api="blas"):  # the process's own limit comes back afterwards
        settings.SHOPGUIDE = {**settings.SHOPGUIDE, "TORCH_THREADS": None}  # resets the serving index
        assert blas_threads() == {2}
        assert ServingIndex.get() is not None
        assert blas_threads() == {1}
    ServingIndex.reset()
