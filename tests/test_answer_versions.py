"""Every answer names the version that ranked it, also when another process cached it during
an activation. Real PostgreSQL, a second process, the slang shop's trained version."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.cache import cache

from shopguide import operations, services, serving
from shopguide.models import RecommenderModel, SearchEvent
from shopguide.serving import ServingIndex
from tests.conftest import trained_slang_shop
from tests.test_worker import database_url

pytestmark = pytest.mark.serving

ROOT = Path(__file__).resolve().parent.parent
URL = "/api/shopguide/recommendations/?q="

shop = pytest.fixture(scope="module")(trained_slang_shop)


def recommend_elsewhere(query, settings):
    """The version that answers ``query`` in a fresh process (serving the active version)."""
    env = dict(os.environ, DATABASE_URL=database_url(), MEDIA_ROOT=str(settings.MEDIA_ROOT), TORCH_THREADS="1")
    command = f"from shopguide.services import recommend; print(recommend({query!r}).model_version)"
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", command], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert done.stdout.split()[-1:], done.stdout + done.stderr
    return int(done.stdout.split()[-1])


def test_every_answer_names_the_version_that_ranked_it(shop, transactional_db, monkeypatch, client, settings):
    """After an activation, a web process still rebuilding its index answers with the old
    version, and files those answers under the old state: the shared cache never hands them
    to a process serving the new one. The worker's warm-up ranks with the new version."""
    first = RecommenderModel.objects.get(is_active=True)
    shutil.copytree(first.folder, first.folder.parent / "v2")
    second = RecommenderModel.objects.create(
        version=first.version + 1,
        base_model=first.base_model,
        checksum=first.checksum,
        artifact_path=Path(first.artifact_path).with_name("v2").as_posix(),
    )
    monkeypatch.setattr(serving, "STATE_TTL", 0)
    ServingIndex.reset()
    cache.clear()
    assert client.get(URL + "lamp").json()["model_version"] == first.version
    # This process keeps its index (its rebuild in the background not done yet).
    monkeypatch.setattr(ServingIndex, "rebuild_in_background", classmethod(lambda cls, epoch, changes: None))
    operations.rescore_here(second, activate=True)
    assert client.get(URL + "desk+lamp").json()["model_version"] == first.version  # ranked here
    assert recommend_elsewhere("desk lamp", settings) == second.version  # not this process's answer
    assert recommend_elsewhere("garden hose", settings) == second.version
    assert client.get(URL + "garden+hose").json()["model_version"] == first.version  # still ranked here
    assert ServingIndex.get().model.version == first.version

    # A worker warming the cache right after the swap does it with the new version.
    for voter in "abc":
        SearchEvent.objects.create(
            query="hose reel", product_key="1", event="impression", voter=voter, created_at="2026-11-01T00:00Z"
        )
    assert services.warm_cache(limit=5) == 1
    assert ServingIndex.get().model.version == second.version
    assert cache.get(services.cache_key("hose reel"))[0] == second.version
    assert client.get(URL + "garden+hose").json()["model_version"] == second.version  # from the shared cache
    ServingIndex.reset()
