"""Gunicorn settings for a shop serving shopguide (bench/serving.py and bench/load.py use them).

    gunicorn config.wsgi -c config/gunicorn.conf.py

Environment: ``BIND`` (default 127.0.0.1:8000), ``WEB_WORKERS`` (2), ``WEB_THREADS`` (4).
Each worker process holds one copy of the ONNX query encoder and the lexical indexes (about
300 MB on the 54,667-product Home Depot catalogue; 690 MB when it encoded with torch), so two
fit on a small machine. On two cores shared with PostgreSQL, two processes of 4 threads served
25% more uncached requests than one of 8 (bench/README.md#serving).
"""

import ctypes
import os

bind = os.environ.get("BIND", "127.0.0.1:8000")
workers = int(os.environ.get("WEB_WORKERS", "2"))
worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "4"))
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
