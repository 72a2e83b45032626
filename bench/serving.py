"""Serving benchmark: the recommendations API under real HTTP load, against its own floor.

    .venv/bin/python bench/serving.py [--seconds 60] [--clients 8]

Needs the database that ``bench/quality.py --datasets homedepot`` left (the 54,667-product
Home Depot catalogue with a trained, active version that has its ONNX export);
``--database-url`` and ``--media-root`` point elsewhere. It starts the demo project under
gunicorn twice, once encoding queries with torch (``QUERY_ENCODER=torch``) and once with the
version's ONNX export (``auto``), each one worker process with 8 threads, drives them with a
small threaded HTTP/1.1 keep-alive load generator in this process, and measures, side by
side in one run:

- per path, the floor (encoding a query and the vector search, timed in this process) and
  uncached requests from one client over ``--queries`` distinct queries the server has not
  seen (the held-out ``dev`` ones first), all four taken in turns so that they see the
  machine in the same state; the share of those queries that get no recommendation;
- per path, 8 clients for ``--seconds`` on other unseen queries (uncached), in two halves
  taken torch, ONNX, ONNX, torch (the machine's drift cancels); and the ONNX path with two
  worker processes of 4 threads (what fits two cores now), next to the demo's plain
  PostgreSQL full-text search endpoint under the same load;
- the same requests again, now cached; requests/s of cached recommendations and of a trivial
  JSON view at 8 clients;
- each web worker's resident memory with the model loaded; the reranker's added latency.

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


def start_server(env, port, workers=1, threads=8):
    command = [str(ROOT / ".venv" / "bin" / "gunicorn"), "config.wsgi", "-c", str(ROOT / "config" / "gunicorn.conf.py")]
    server = subprocess.Popen(
        command,
        cwd=ROOT,
        env=dict(env, BIND=f"127.0.0.1:{port}", WEB_WORKERS=str(workers), WEB_THREADS=str(threads)),
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


def serving_ranking(query_encoder="auto"):
    """The serving version's ranking, as a web process with ``QUERY_ENCODER`` holds it."""
    from django.conf import settings
    from django.test.utils import override_settings

    from shopguide.serving import ServingIndex

    with override_settings(SHOPGUIDE={**settings.SHOPGUIDE, "QUERY_ENCODER": query_encoder}):
        index = ServingIndex.get()  # the settings' change reset the index: built for this choice
        ServingIndex.reset()  # the ranking stays with this caller, the next one builds its own
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


def floors_and_uncached(paths, queries):
    """Per path (``{name: (ranking, port)}``), the floor and uncached requests, all taken in
    turns: for each query, a floor timing in this process and a request to each server. This
    machine's speed drifts by more than the gaps measured within a minute; taken in turns,
    all see it in the same state. The floors time query i and the servers answer query
    i + n/2, so neither warms the other's caches; a pause after each answer lets the server
    finish what it does after responding. Returns ``{name: (floor timings, requests)}``, the
    requests in ``queries`` order."""
    half = len(queries) // 2
    clients = {name: Client(port) for name, (_, port) in paths.items()}
    floors, answers = {name: [] for name in paths}, {name: {} for name in paths}
    for i, query in enumerate(queries):
        other = (i + half) % len(queries)
        for name, (ranking, _) in paths.items():
            floors[name].append(floor_once(ranking, query))
            answers[name][other] = clients[name].get(recommendations_path(queries[other]))
            time.sleep(0.005)  # the server finishes its work after the response (the cache write)
    return {name: (floors[name], [answers[name][i] for i in range(len(queries))]) for name in paths}


def django_default_empty(queries):
    """How many queries Django's default full-text search (every word must match) leaves empty."""
    from django.contrib.postgres.search import SearchQuery

    from catalog.models import SEARCH_CONFIG, Product

    return sum(
        not Product.objects.filter(search_vector=SearchQuery(query, config=SEARCH_CONFIG)).exists() for query in queries
    )


def reranker_ms(ranking, queries):
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


def stop(server):
    os.killpg(server.pid, 15)
    server.wait(timeout=30)


def halves(port_of, clients, seconds, paths):
    """``load`` on each path's server in two halves of ``seconds``, in the order a b b a."""
    parts = {name: [] for name in port_of}
    order = list(port_of) + list(reversed(port_of))
    for name in order:
        parts[name].append(load(port_of[name], clients, seconds / 2, paths))
    merged = {}
    for name, (first, second) in parts.items():
        merged[name] = {
            "requests": first["requests"] + second["requests"],
            "errors": first["errors"] + second["errors"],
            "requests_per_s": round((first["requests_per_s"] + second["requests_per_s"]) / 2, 1),
            "p50_ms": max(first["p50_ms"], second["p50_ms"]),
            "p99_ms": max(first["p99_ms"], second["p99_ms"]),
        }
    return merged


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    trained_shop.add_arguments(parser)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--queries", type=int, default=1200, help="distinct unseen queries for one client")
    args = parser.parse_args()
    env = trained_shop.setup_django(args)
    prepare_database(env)

    with open(args.data / "judgments.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    dev = sorted({row["query"] for row in rows if row.get("split") == "dev"})
    others = sorted({row["query"] for row in rows if row.get("split") != "dev"})
    random.Random(7).shuffle(others)
    one_client = (dev + others)[: args.queries]
    unseen = others[max(0, args.queries - len(dev)) :]  # the load runs: queries no run above asked
    results = {"queries": {"dev": len(dev), "one_client": len(one_client), "load": len(unseen)}}

    from django.core.cache import cache

    cache.clear()  # answers of an earlier run would make "uncached" requests cached ones
    rankings = {"torch": serving_ranking("torch"), "onnx": serving_ranking("auto")}
    if type(rankings["onnx"].encoder).__name__ != "OnnxEncoder":
        raise SystemExit("The active version has no ONNX export: train a new one (bench/quality.py).")
    results["vector_path"] = (
        "in-process exact (numpy)" if hasattr(rankings["onnx"].vectors, "vectors") else "pgvector HNSW"
    )
    for ranking in rankings.values():
        for query in dev[:50]:  # the floor's first queries would otherwise pay for warming up
            floor_once(ranking, query)
    results["reranker_p50_ms"] = reranker_ms(rankings["torch"], dev[:50])

    ports = {"torch": free_port(), "onnx": free_port()}
    servers = {  # their own cache keys: an answer one server cached would be the other's cache hit
        name: start_server(dict(env, QUERY_ENCODER="torch" if name == "torch" else "auto", CACHE_KEY_PREFIX=name), port)
        for name, port in ports.items()
    }
    try:
        for name, port in ports.items():
            status, _, ms = Client(port).get(recommendations_path(f"warm up {name}"))  # its own: uncached
            results[name] = {"first_request_ms": round(ms)}  # loads the version, builds the lexical index
            print(f"{name} server up; first request {ms:.0f} ms", flush=True)

        print(f"floors and uncached requests, one client per path, in turns, {len(one_client)} queries ...", flush=True)
        measured = floors_and_uncached({name: (rankings[name], ports[name]) for name in ports}, one_client)
        for name, (floors, uncached) in measured.items():
            results[name]["floor_p50_ms"] = round(statistics.median(floors), 1)
            results[name]["uncached_one_client"] = summary(uncached)
            results[name]["without_recommendation"] = sum(
                1 for status, body, _ in uncached[: len(dev)] if status == 200 and not json.loads(body)["results"]
            )
        cache.clear()
        print(f"uncached, {args.clients} clients, {args.seconds:.0f} s per path (halves a b b a) ...", flush=True)
        loads = halves(ports, args.clients, args.seconds, cycler([recommendations_path(q) for q in unseen]))
        for name in ports:
            results[name]["uncached_clients"] = loads[name]
            results[name]["worker_rss_mb"] = worker_rss_mb(servers[name])

        fts = sequential(ports["onnx"], [search_path(query) for query in dev])
        results["fts_dev_queries_without_results"] = sum(
            1 for status, body, _ in fts if status == 200 and not json.loads(body)["results"]
        )
        results["django_default_fts_without_results"] = django_default_empty(dev)
        print("cached, one client ...", flush=True)
        sequential(ports["onnx"], [recommendations_path(q) for q in dev])  # caches them (cleared before the load)
        results["cached_one_client"] = summary(sequential(ports["onnx"], [recommendations_path(q) for q in dev]))
        print(f"cached vs trivial view, {args.clients} clients ...", flush=True)
        short = min(args.seconds, 20)
        results["cached_clients"] = load(
            ports["onnx"], args.clients, short, cycler([recommendations_path(q) for q in dev])
        )
        results["trivial_clients"] = load(ports["onnx"], args.clients, short, lambda: "/healthz/")
        print(f"plain full-text search, {args.clients} clients, {args.seconds:.0f} s ...", flush=True)
        results["fts_clients"] = load(
            ports["onnx"], args.clients, args.seconds, cycler([search_path(q) for q in unseen])
        )
    finally:
        for server in servers.values():
            stop(server)

    print("ONNX path, two worker processes x 4 threads ...", flush=True)
    cache.clear()
    port = free_port()
    server = start_server(dict(env, QUERY_ENCODER="auto"), port, workers=2, threads=4)
    try:
        for _ in range(8):  # each worker loads the version on its first request
            Client(port).get(recommendations_path("warm up"))
        results["onnx_two_workers"] = {
            "uncached_clients": load(
                port, args.clients, args.seconds / 2, cycler([recommendations_path(q) for q in unseen[::-1]])
            ),
            "worker_rss_mb": worker_rss_mb(server),
        }
    finally:
        stop(server)

    results["seconds"], results["clients"] = args.seconds, args.clients
    markdown = table(results)
    publish("serving", results, markdown)


def table(r):
    torch, onnx, two = r["torch"], r["onnx"], r["onnx_two_workers"]
    cached = r["cached_one_client"]
    ratio = r["cached_clients"]["requests_per_s"] / r["trivial_clients"]["requests_per_s"]
    fts = r["fts_clients"]
    reranker = (
        f"{r['reranker_p50_ms']} ms p50 over its top candidates (torch)"
        if r["reranker_p50_ms"]
        else "not used: the trained version has no reranker"
    )

    def one(path):
        uncached = path["uncached_one_client"]
        return (
            f"{uncached['p50_ms']} / {uncached['p99_ms']} ms ({uncached['p50_ms'] / onnx['floor_p50_ms']:.2f}x the "
            f"ONNX floor, p99 {uncached['p99_ms'] / uncached['p50_ms']:.1f}x p50)"
        )

    def many(path):
        load = path["uncached_clients"]
        return f"{load['requests_per_s']} requests/s, p50 / p99 {load['p50_ms']} / {load['p99_ms']} ms, {load['errors']} errors"

    return "\n".join(
        [
            f"Home Depot catalogue (54,667 products), gunicorn, one worker process x 8 threads unless said; vectors: "
            f"{r['vector_path']}; {r['queries']['one_client']} distinct unseen queries for one client (the "
            f"{r['queries']['dev']} held-out ones first), other unseen queries for the load runs.",
            "",
            "| measure | torch | ONNX (onnxruntime) |",
            "|---|---|---|",
            f"| floor: encode the query + vector search, in process (p50) | {torch['floor_p50_ms']} ms | {onnx['floor_p50_ms']} ms |",
            f"| uncached, one client (p50 / p99) | {one(torch)} | {one(onnx)} |",
            f"| uncached p50, ONNX / torch | | {onnx['uncached_one_client']['p50_ms'] / torch['uncached_one_client']['p50_ms']:.2f}x |",
            f"| uncached, {r['clients']} clients, {r['seconds']:.0f} s | {many(torch)} | {many(onnx)} |",
            f"| uncached, {r['clients']} clients, two worker processes x 4 threads | | {many(two)} "
            f"({two['uncached_clients']['requests_per_s'] / torch['uncached_clients']['requests_per_s']:.2f}x torch's one process) |",
            f"| web worker resident memory, model loaded | {torch['worker_rss_mb']} MB | {onnx['worker_rss_mb']} MB "
            f"(two workers: {two['worker_rss_mb']} MB each at most) |",
            f"| first request of a fresh worker (loads the version) | {torch['first_request_ms']} ms | {onnx['first_request_ms']} ms |",
            f"| held-out queries with no recommendation | {torch['without_recommendation']} of {r['queries']['dev']} | "
            f"{onnx['without_recommendation']} of {r['queries']['dev']} |",
            "",
            f"Same run, ONNX path: cached, one client, p50 / p99 {cached['p50_ms']} / {cached['p99_ms']} ms; cached at "
            f"{r['clients']} clients {r['cached_clients']['requests_per_s']} requests/s against a trivial JSON view's "
            f"{r['trivial_clients']['requests_per_s']} ({ratio:.0%}); the demo's plain PostgreSQL full-text search "
            f"endpoint under the same load {fts['requests_per_s']} requests/s, p50 / p99 {fts['p50_ms']} / {fts['p99_ms']} ms; "
            f"held-out queries without any full-text result: {r['django_default_fts_without_results']} (Django's "
            f"default, every word) and {r['fts_dev_queries_without_results']} (the demo's any-word fallback); "
            f"reranker: {reranker}.",
        ]
    )


if __name__ == "__main__":
    main()
