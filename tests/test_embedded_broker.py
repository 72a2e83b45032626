"""The embedded Redis a process starts for want of CELERY_BROKER_URL stops when that process
exits, even after it sent tasks (its broker connections would otherwise keep it alive)."""

import os
import subprocess
import sys
import time

import psutil
import redis

from tests.test_worker import ROOT, database_url

SCRIPT = """
import django
django.setup()
from config import embedded
from shopguide.tasks import warm_cache
warm_cache.apply_async(queue="nobody-listens")
server = embedded._servers["redis"]
print(server.pid, server.socket_file)
"""


def test_the_embedded_redis_stops_with_the_process_that_started_it(tmp_path):
    env = {name: value for name, value in os.environ.items() if name != "CELERY_BROKER_URL"}
    env.update(DJANGO_SETTINGS_MODULE="config.settings", SHOPGUIDE_VAR_DIR=str(tmp_path), DATABASE_URL=database_url())
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    pid, socket_file = done.stdout.split()[-2:]
    pid = int(pid)
    deadline = time.monotonic() + 10
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        if time.monotonic() > deadline:
            clients = redis.Redis(unix_socket_path=socket_file).client_list()
            psutil.Process(pid).kill()
            raise AssertionError(f"redis-server {pid} outlived the process that started it; its clients: {clients}")
        time.sleep(0.2)
