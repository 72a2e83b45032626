"""Gunicorn settings for a shop serving shopguide (bench/serving.py and bench/load.py use them).

    gunicorn config.wsgi -c config/gunicorn.conf.py

Environment: ``BIND`` (default 127.0.0.1:8000), ``WEB_WORKERS`` (1), ``WEB_THREADS`` (8).
Each worker process holds one copy of the ONNX query encoder and the lexical indexes (about
330 MB on the 54,667-product Home Depot catalogue; 710 MB when it encoded with torch). With
PostgreSQL on the same two cores one process of 8 threads served more than two of 4
(bench/README.md); with the database elsewhere, run one process per core.
"""

import ctypes
import os

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_WORKERS", "1"))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "8"))
timeout = 120  # the first request of a fresh worker loads the version
loglevel = "warning"

M_ARENA_MAX = -8  # glibc's mallopt parameter number


def post_fork(server, worker):
    """Two malloc arenas per worker: by default every thread that allocates may get an arena of
    its own (up to eight per core), and each keeps the memory it freed, so a threaded worker's
    resident size grows with its thread count instead of its working set."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, 2)
    except (OSError, AttributeError):  # not glibc
        pass
