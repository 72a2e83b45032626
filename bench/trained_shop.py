"""The shops bench/quality.py trains, as the other benchmarks find them: a database named
``shopguide_bench_<dataset>`` on DATABASE_URL's server (or the embedded one), and its model
versions under ``var/bench/<dataset>``."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def database_url(name):
    """The URL of database ``name`` on DATABASE_URL's server, or on the embedded one."""
    from config import embedded

    server_url = os.environ.get("DATABASE_URL") or embedded.postgres_url()
    base, _, query = server_url.partition("?")
    return base.rsplit("/", 1)[0] + f"/{name}" + (f"?{query}" if query else "")


def add_arguments(parser, dataset="homedepot"):
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / dataset)
    parser.add_argument("--database-url", default=None, help=f"default: the shopguide_bench_{dataset} database")
    parser.add_argument("--media-root", default=str(ROOT / "var" / "bench" / dataset))


def setup_django(args, **settings):
    """Settings for this process and the servers and workers it starts (returned as their
    environment): the trained shop, one torch thread, production-like Django."""
    env = dict(
        os.environ,
        DATABASE_URL=args.database_url or database_url("shopguide_bench_homedepot"),
        MEDIA_ROOT=args.media_root,
        TORCH_THREADS="1",
        DEBUG="0",
        SECRET_KEY="benchmark",
        ALLOWED_HOSTS="127.0.0.1",
        PYTHONUNBUFFERED="1",
        DJANGO_SETTINGS_MODULE="config.settings",
        **settings,
    )
    os.environ.update(env)
    import django
    import torch

    django.setup()
    torch.set_num_threads(1)
    return env
