"""Load test: 50 shoppers at once on the recommendations API and the events endpoint.

    .venv/bin/python bench/load.py [--clients 50] [--seconds 60]

Against the trained Home Depot shop that ``bench/quality.py --datasets homedepot`` left, served
by gunicorn as in bench/serving.py (per-client event throttling lifted: every request comes
from 127.0.0.1). Each simulated shopper searches (a real query, so most answers are computed,
some cached), then posts an impression of every recommendation and a click on one, with the
shopper token a search page gave it, and starts again. Afterwards the events stored in PostgreSQL are counted against the events the server
acknowledged. It does so twice in one run, the server encoding queries with torch
(``QUERY_ENCODER=torch``) and then with the version's ONNX export. Prints a table, writes
``bench/results/load.{json,md}`` and bench/README.md's table.
"""

import argparse
import csv
import json
import os
import random
import re
import sys
import threading
import time
import urllib.parse
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import trained_shop  # noqa: E402
from publishing import publish  # noqa: E402
from serving import (  # noqa: E402
    Client,
    free_port,
    percentile,
    prepare_database,
    recommendations_path,
    start_server,
)


def page_token(client, query):
    """The shopper token the demo's search page renders (the tracking script sends it back)."""
    status, body, _ = client.get("/search/?" + urllib.parse.urlencode({"q": query}))
    match = re.search(r'data-shopguide-token="([^"]+)"', body.decode())
    if status != 200 or not match:
        raise RuntimeError(f"the search page gave no shopper token (HTTP {status})")
    return match.group(1)


def shopper(port, queries, deadline, out, lock):
    client, rng = Client(port), random.Random()
    token = page_token(client, rng.choice(queries))
    mine = {"search": [], "events": [], "errors": 0, "acknowledged": 0, "sent": 0, "tokens": [token]}
    while time.perf_counter() < deadline:
        query = rng.choice(queries)
        status, body, ms = client.get(recommendations_path(query))
        if status != 200:
            mine["errors"] += 1
            continue
        mine["search"].append(ms)
        products = [item["product"] for item in json.loads(body)["results"]]
        events = [{"query": query, "product": key, "event": "impression"} for key in products]
        if products:
            events.append({"query": query, "product": rng.choice(products), "event": "click"})
        mine["sent"] += len(events)
        status, body, ms = client.post_json("/api/shopguide/events/", events, {"X-Shopguide-Token": token})
        if status != 201:
            mine["errors"] += 1
            continue
        mine["events"].append(ms)
        mine["acknowledged"] += json.loads(body)["stored"]
    with lock:
        for key, value in mine.items():
            out[key] = out.get(key, [] if isinstance(value, list) else 0) + value


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    trained_shop.add_arguments(parser)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    args = parser.parse_args()
    env = trained_shop.setup_django(args, EVENTS_RATE="none")
    prepare_database(env)

    with open(args.data / "judgments.csv", newline="") as file:
        queries = sorted({row["query"] for row in csv.DictReader(file)})
    from django.core.cache import cache

    results = {"clients": args.clients}
    for name, choice in (("torch", "torch"), ("onnx", "auto")):
        cache.clear()  # the first run's answers would be the second's cache hits
        print(f"{args.clients} shoppers, {args.seconds:.0f} s, queries encoded with {name} ...", flush=True)
        results[name] = shoppers(dict(env, QUERY_ENCODER=choice), args, queries)
    publish("load", results, table(results))


def shoppers(env, args, queries):
    from shopguide.models import SearchEvent
    from shopguide.shoppers import read_token

    port = free_port()
    server = start_server(env, port)
    out, lock = {}, threading.Lock()
    try:
        Client(port).get(recommendations_path("warm up"))
        deadline = time.perf_counter() + args.seconds
        threads = [
            threading.Thread(target=shopper, args=(port, queries, deadline, out, lock)) for _ in range(args.clients)
        ]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
    stored = SearchEvent.objects.filter(session__in=[read_token(token).id for token in out["tokens"]]).count()
    return {
        "seconds": round(elapsed, 1),
        "searches": len(out["search"]),
        "event_posts": len(out["events"]),
        "errors": out["errors"],
        "events_sent": out["sent"],
        "events_acknowledged": out["acknowledged"],
        "events_stored": stored,
        "search_p50_ms": round(percentile(out["search"], 0.5), 1),
        "search_p99_ms": round(percentile(out["search"], 0.99), 1),
        "events_p50_ms": round(percentile(out["events"], 0.5), 1),
        "events_p99_ms": round(percentile(out["events"], 0.99), 1),
        "requests_per_s": round((len(out["search"]) + len(out["events"]) + out["errors"]) / elapsed, 1),
    }


def table(r):
    torch, onnx = r["torch"], r["onnx"]

    def row(label, value):
        return f"| {label} | {value(torch)} | {value(onnx)} |"

    return "\n".join(
        [
            f"{r['clients']} concurrent shoppers for {onnx['seconds']:.0f} s against one gunicorn worker (8 threads), "
            "Home Depot catalogue, trained version serving; the same run, queries encoded with torch, then with the "
            "version's ONNX export.",
            "",
            "| measure | torch | ONNX |",
            "|---|---|---|",
            row(
                "requests (searches + event posts), errors",
                lambda x: f"{x['searches']} + {x['event_posts']}, {x['errors']} errors",
            ),
            row("requests/s", lambda x: x["requests_per_s"]),
            row("recommendations p50 / p99", lambda x: f"{x['search_p50_ms']} / {x['search_p99_ms']} ms"),
            row("event posts p50 / p99", lambda x: f"{x['events_p50_ms']} / {x['events_p99_ms']} ms"),
            row(
                "events sent / acknowledged / stored in PostgreSQL",
                lambda x: f"{x['events_sent']} / {x['events_acknowledged']} / {x['events_stored']}",
            ),
        ]
    )


if __name__ == "__main__":
    main()
