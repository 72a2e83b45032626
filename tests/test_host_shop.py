"""A host shop with its own product model, settings and Celery app (tests/host_shop/) adopts
shopguide through the documented surface only: see tests/host_shop/scenario.py."""

import os
import subprocess
import sys
import uuid

import psycopg
import pytest
from django.db import connection

from config.celery import app as celery_app
from tests.test_worker import ROOT, database_url

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_a_host_shop_adopts_shopguide_through_the_documented_surface(tmp_path):
    name = f"host_shop_{uuid.uuid4().hex[:8]}"
    admin_url = database_url()
    with psycopg.connect(admin_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        url = admin_url.replace(f"/{connection.settings_dict['NAME']}", f"/{name}", 1)
        env = {
            name: value
            for name, value in os.environ.items()
            if name not in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "DJANGO_ALLOW_ASYNC_UNSAFE")
        }
        env.update(
            HOST_SHOP_DATABASE_URL=url,
            HOST_SHOP_MEDIA_ROOT=str(tmp_path / "media"),
            HOST_SHOP_BUCKET=str(tmp_path / "bucket"),
            HOST_SHOP_BROKER_URL=celery_app.conf.broker_url,
            PYTHONUNBUFFERED="1",
        )
        result = subprocess.run(
            [sys.executable, "-m", "tests.host_shop.scenario"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
        assert "left every answer after the reconciliation" in result.stdout
    finally:
        with psycopg.connect(admin_url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
