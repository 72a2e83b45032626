"""Serving benchmark: the recommendations API under real HTTP load, against its own floor.

    .venv/bin/python bench/serving.py [--seconds 60] [--clients 8]

Needs the database that ``bench/quality.py --datasets homedepot`` left (the 54,667-product
Home Depot catalogue with a trained, active version); ``--database-url`` and ``--media-root``
point elsewhere. It starts the demo project under gunicorn (``config/gunicorn.conf.py``: one
worker process, 8 threads), drives it with a small threaded HTTP/1.1 keep-alive load
generator in this process, and measures, side by side in one run:

- the floor (encoding a query and the vector search, timed in this process) and uncached
  requests from one client over every held-out (``dev``) query, taken in turns so that both
  see the machine in the same state; the share of those queries that get no recommendation;
- the same requests again, now cached; requests/s of cached recommendations and of a trivial
  JSON view at 8 clients;
- 8 clients for ``--seconds`` on unseen queries (uncached), next to the demo's plain
  PostgreSQL full-text search endpoint under the same load;
- the web worker's resident memory with the model loaded; the reranker's added latency.

It prints a table, writes ``bench/results/serving.{json,md}`` and refreshes bench/README.md's table.
"""

import argparse
import csv
import http.client
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import trained_shop  # noqa: E402
from publishing import publish  # noqa: E402


def percentile(values, share):
    values = sorted(values)
    return values[min(len(values) - 1, int(share * len(values)))] if values else float("nan")


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Client:
    """One keep-alive HTTP/1.1 connection."""

    def __init__(self, port):
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def get(self, path):
        return self.request("GET", path)

    def post_json(self, path, data, headers=None):
        headers = {"Content-Type": "application/json", **(headers or {})}
        return self.request("POST", path, json.dumps(data).encode(), headers)

    def request(self, method, path, body=None, headers=None):
        started = time.perf_counter()
        try:
            self.connection.request(method, path, body=body, headers=headers or {})
            response = self.connection.getresponse()
            body = response.read()
            status = response.status
        except (OSError, http.client.HTTPException):
            self.connection.close()
            body, status = b"", 0
        return status, body, (time.perf_counter() - started) * 1000


def recommendations_path(query):
    return "/api/shopguide/recommendations/?" + urllib.parse.urlencode({"q": query, "limit": 8})


def search_path(query):
    return "/search.json?" + urllib.parse.urlencode({"q": query})


def sequential(port, paths):
    client = Client(port)
    return [client.get(path) for path in paths]


def load(port, clients, seconds, next_path):
    """``clients`` threads request ``next_path()`` back to back for ``seconds``."""
    results, lock = [], threading.Lock()
    deadline = time.perf_counter() + seconds

    def work():
        client, mine = Client(port), []
        while time.perf_counter() < deadline:
            status, _, ms = client.get(next_path())
            mine.append((status, ms))
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=work) for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    latencies = [ms for status, ms in results if status == 200]
    return {
        "requests": len(results),
        "errors": sum(status != 200 for status, _ in results),
        "requests_per_s": round(len(results) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 0.5), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
    }


def summary(timings):
    latencies = [ms for status, _, ms in timings if status == 200]
    return {
        "requests": len(timings),
        "errors": sum(status != 200 for status, _, _ in timings),
        "p50_ms": round(percentile(latencies, 0.5), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
    }


def cycler(items):
    lock, state = threading.Lock(), {"i": 0}

    def next_item():
        with lock:
            state["i"] += 1
            return items[state["i"] % len(items)]

    return next_item


def prepare_database(env):
    """Bring the benchmark database up to date: migrations and the cache table."""
    for command in (["migrate", "--noinput", "-v", "0"], ["createcachetable"]):
        subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=env, check=True)


def start_server(env, port):
    command = [str(ROOT / ".venv" / "bin" / "gunicorn"), "config.wsgi", "-c", str(ROOT / "config" / "gunicorn.conf.py")]
    server = subprocess.Popen(
        command,
        cwd=ROOT,
        env=dict(env, BIND=f"127.0.0.1:{port}", WEB_WORKERS="1", WEB_THREADS="8"),
        start_new_session=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        status, _, _ = Client(port).get("/healthz/")
        if status == 200:
            return server
        time.sleep(0.3)
    server.kill()
    raise SystemExit("The server did not answer /healthz/ within 60 s.")


def serving_ranking():
    """The serving version's ranking, as the web process holds it."""
    from shopguide.serving import ServingIndex

    index = ServingIndex.get()
    if index is None:
        raise SystemExit("No active version with vectors: run bench/quality.py --datasets homedepot first.")
    return index.ranking


def floor_once(ranking, query):
    """Milliseconds to encode one query and find its nearest products, in this process."""
    started = time.perf_counter()
    vector = ranking.encoder.encode_queries([query])[0]
    with ranking.vectors.search(vector, ranking.catalogue.keys) as cosines:
        cosines(())
    return (time.perf_counter() - started) * 1000


def floor_and_uncached(port, queries):
    """The floor and uncached requests, taken in turns: a floor timing in this process, then
    a request for another query, and so on. This machine's speed drifts by more than the
    gap between the two within a minute; taken in turns, both see it in the same state.
    The floor times query i and the server answers query i + n/2, so neither warms the
    other's caches; a pause after each answer lets the server finish what it does after
    responding before the next floor timing. Returns the floor timings and the requests (in
    ``queries`` order)."""
    ranking, half = serving_ranking(), len(queries) // 2
    client, floors, answers = Client(port), [], {}
    for i, query in enumerate(queries):
        floors.append(floor_once(ranking, query))
        other = (i + half) % len(queries)
        answers[other] = client.get(recommendations_path(queries[other]))
        time.sleep(0.005)  # the server finishes its work after the response (the cache write)
    return floors, [answers[i] for i in range(len(queries))]


def django_default_empty(queries):
    """How many queries Django's default full-text search (every word must match) leaves empty."""
    from django.contrib.postgres.search import SearchQuery

    from catalog.models import SEARCH_CONFIG, Product

    return sum(
        not Product.objects.filter(search_vector=SearchQuery(query, config=SEARCH_CONFIG)).exists() for query in queries
    )


def reranker_ms(queries):
    ranking = serving_ranking()
    if ranking.reranker is None:
        return None
    timings = []
    catalogue = ranking.catalogue
    for query in queries:
        keys = ranking.rank(query).fused[: ranking.rerank_depth]
        started = time.perf_counter()
        ranking.reranker.score(query, [catalogue.texts[catalogue.positions[key]] for key in keys])
        timings.append((time.perf_counter() - started) * 1000)
    return round(statistics.median(timings), 1)


def worker_rss_mb(server):
    import psutil

    children = psutil.Process(server.pid).children(recursive=True)
    return round(max(child.memory_info().rss for child in children) / 2**20) if children else None


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    trained_shop.add_arguments(parser)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    env = trained_shop.setup_django(args)
    prepare_database(env)

    with open(args.data / "judgments.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    dev = sorted({row["query"] for row in rows if row.get("split") == "dev"})
    unseen = sorted({row["query"] for row in rows if row.get("split") != "dev"})
    random.Random(7).shuffle(unseen)
    results = {"queries": {"dev": len(dev), "load": len(unseen)}}

    from django.core.cache import cache

    cache.clear()  # answers of an earlier run would make "uncached" requests cached ones
    ranking = serving_ranking()
    results["vector_path"] = "in-process exact (numpy)" if hasattr(ranking.vectors, "vectors") else "pgvector HNSW"
    for query in dev[:50]:  # the floor's first queries would otherwise pay for warming up
        floor_once(ranking, query)
    results["reranker_p50_ms"] = reranker_ms(dev[:50])

    port = free_port()
    server = start_server(env, port)
    try:
        status, _, ms = Client(port).get(recommendations_path("warm up"))
        results["first_request_ms"] = round(ms)  # loads the version and builds the lexical index
        print(f"server up; first request {ms:.0f} ms", flush=True)

        print(
            f"floor in this process and uncached requests, one client, in turns, {len(dev)} dev queries ...", flush=True
        )
        floors, uncached = floor_and_uncached(port, dev)
        results["floor_p50_ms"] = round(statistics.median(floors), 1)
        results["uncached_one_client"] = summary(uncached)
        empty = sum(1 for status, body, _ in uncached if status == 200 and not json.loads(body)["results"])
        results["dev_queries_without_recommendation"] = empty
        fts = sequential(port, [search_path(query) for query in dev])
        results["fts_dev_queries_without_results"] = sum(
            1 for status, body, _ in fts if status == 200 and not json.loads(body)["results"]
        )
        results["django_default_fts_without_results"] = django_default_empty(dev)

        print("cached, one client ...", flush=True)
        results["cached_one_client"] = summary(sequential(port, [recommendations_path(query) for query in dev]))

        print(f"cached vs trivial view, {args.clients} clients ...", flush=True)
        short = min(args.seconds, 20)
        results["cached_clients"] = load(port, args.clients, short, cycler([recommendations_path(q) for q in dev]))
        results["trivial_clients"] = load(port, args.clients, short, lambda: "/healthz/")

        print(f"uncached, {args.clients} clients, {args.seconds:.0f} s ...", flush=True)
        results["uncached_clients"] = load(
            port, args.clients, args.seconds, cycler([recommendations_path(q) for q in unseen])
        )
        print(f"plain full-text search, {args.clients} clients, {args.seconds:.0f} s ...", flush=True)
        results["fts_clients"] = load(port, args.clients, args.seconds, cycler([search_path(q) for q in unseen]))
        results["worker_rss_mb"] = worker_rss_mb(server)
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)

    results["seconds"], results["clients"] = args.seconds, args.clients
    markdown = table(results)
    publish("serving", results, markdown)


def table(r):
    floor, uncached, cached = r["floor_p50_ms"], r["uncached_one_client"], r["cached_one_client"]
    ratio = r["cached_clients"]["requests_per_s"] / r["trivial_clients"]["requests_per_s"]
    load, fts = r["uncached_clients"], r["fts_clients"]
    reranker = (
        f"{r['reranker_p50_ms']} ms p50 over its top candidates"
        if r["reranker_p50_ms"]
        else "not used: the trained version has no reranker (training found it did not help)"
    )
    return "\n".join(
        [
            f"Home Depot catalogue (54,667 products), one gunicorn worker (8 threads), vectors: {r['vector_path']}; "
            f"{r['queries']['dev']} held-out queries, {r['queries']['load']} other queries for the load runs.",
            "",
            "| measure | result |",
            "|---|---|",
            f"| floor: encode the query + vector search, in process (p50) | {floor} ms |",
            f"| uncached, one client (p50 / p99) | {uncached['p50_ms']} / {uncached['p99_ms']} ms "
            f"({uncached['p50_ms'] / floor:.2f}x the floor) |",
            f"| cached, one client (p50 / p99) | {cached['p50_ms']} / {cached['p99_ms']} ms |",
            f"| cached, {r['clients']} clients: requests/s vs a trivial JSON view | "
            f"{r['cached_clients']['requests_per_s']} vs {r['trivial_clients']['requests_per_s']} ({ratio:.0%}) |",
            f"| uncached, {r['clients']} clients, {r['seconds']:.0f} s: requests, errors, p50 / p99, requests/s | "
            f"{load['requests']}, {load['errors']}, {load['p50_ms']} / {load['p99_ms']} ms, {load['requests_per_s']} |",
            f"| plain PostgreSQL full-text search endpoint, same load | "
            f"{fts['requests']}, {fts['errors']}, {fts['p50_ms']} / {fts['p99_ms']} ms, {fts['requests_per_s']} |",
            f"| held-out queries with no recommendation | {r['dev_queries_without_recommendation']} of "
            f"{r['queries']['dev']} (Django's default full-text search: {r['django_default_fts_without_results']} "
            f"with no result; the demo's any-word fallback: {r['fts_dev_queries_without_results']}) |",
            f"| web worker resident memory, model loaded | {r['worker_rss_mb']} MB |",
            f"| first request of a fresh worker (loads the version) | {r['first_request_ms']} ms |",
            f"| reranker | {reranker} |",
        ]
    )


if __name__ == "__main__":
    main()
