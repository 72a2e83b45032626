"""Every answer names the version that ranked it, also when another process cached it during
an activation. Real PostgreSQL, a second process, the slang shop's trained version."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.cache import cache

from shopguide import operations, serving
from shopguide.models import RecommenderModel
from shopguide.serving import ServingIndex
from tests.conftest import trained_slang_shop
from tests.test_worker import database_url

ROOT = Path(__file__).resolve().parent.parent
URL = "/api/shopguide/recommendations/?q="

shop = pytest.fixture(scope="module")(trained_slang_shop)


def test_every_answer_names_the_version_that_ranked_it(shop, transactional_db, monkeypatch, client, settings):
    """After an activation, a web process still rebuilding its index answers with the old
    version, while the shared cache fills with the new one's answers (a worker's warm-up)."""
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
    # This process keeps its index (its rebuild in the background not done yet) ...
    monkeypatch.setattr(ServingIndex, "rebuild_in_background", classmethod(lambda cls, epoch, changes: None))
    operations.rescore_here(second, activate=True)
    # ... while another process, serving the new version, fills the shared cache.
    env = dict(os.environ, DATABASE_URL=database_url(), MEDIA_ROOT=str(settings.MEDIA_ROOT), TORCH_THREADS="1")
    command = "from shopguide.services import recommend; print(recommend('garden hose').model_version)"
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", command], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert done.stdout.split()[-1:] == [str(second.version)], done.stdout + done.stderr
    assert client.get(URL + "garden+hose").json()["model_version"] == second.version  # from the shared cache
    assert client.get(URL + "desk+lamp").json()["model_version"] == first.version  # ranked here
    assert ServingIndex.get().model.version == first.version
    ServingIndex.reset()
