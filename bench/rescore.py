"""Rescoring benchmark: the Celery pipeline against the raw encoder, one worker against two.

    .venv/bin/python bench/rescore.py [--raw-sample 6000]

Needs the database that ``bench/quality.py --datasets homedepot`` left (the 54,667-product
Home Depot catalogue with a trained, active version); ``--database-url`` and ``--media-root``
point elsewhere. Every torch process uses one thread, so one worker is compared with one
encoder and two workers use the two cores. In one run it measures:

- raw encoder throughput: the version's encoder over a random sample of the catalogue's
  texts, in this process, nothing else around it;
- incremental: a product saved here, re-encoded by a worker (after the commit) and visible
  in ``recommend()`` here, five times;
- the whole catalogue rescored (every product encoded again, ``--encode-all``) by one
  worker process, then by two, from sending the task to the swap; then the HNSW index rebuild
  that follows the swap, which blocks nobody and is reported apart.

It prints a table, writes ``bench/results/rescore.{json,md}`` and refreshes bench/README.md's table.
"""

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import trained_shop  # noqa: E402
from publishing import publish  # noqa: E402

QUEUE = "shopguide_rescore"


class Workers:
    """``count`` Celery worker processes (one task at a time each, one torch thread)."""

    def __init__(self, env, count):
        self.processes, self.logs = [], []
        for number in range(count):
            log = tempfile.NamedTemporaryFile("w+", prefix=f"rescore-worker{number}-", suffix=".log", delete=False)
            self.logs.append(Path(log.name))
            self.processes.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "celery",
                        "-A",
                        "config",
                        "worker",
                        "--loglevel",
                        "INFO",
                        "--concurrency",
                        "1",
                        "--prefetch-multiplier",
                        "1",
                        "--hostname",
                        f"bench{number}@%h",
                        "--queues",
                        QUEUE,
                    ],
                    cwd=ROOT,
                    env=env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
        deadline = time.monotonic() + 120
        while not all("ready." in log.read_text() for log in self.logs):
            if time.monotonic() > deadline:
                self.stop()
                raise SystemExit("Workers did not start within 120 s: see " + ", ".join(map(str, self.logs)))
            time.sleep(0.5)

    def stop(self):
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)


def wait_for(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise SystemExit(f"Timed out after {timeout} s waiting for {what}.")


def raw_throughput(model, texts):
    from shopguide.ml.version_files import load_encoder

    encoder = load_encoder(model.folder)
    encoder.encode(texts[:200])  # load and warm up
    started = time.perf_counter()
    encoder.encode(texts)
    return len(texts) / (time.perf_counter() - started)


def index_is_valid():
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE c.relname = 'shopguide_productvector_hnsw'"
        )
        row = cursor.fetchone()
    return bool(row and row[0])


def full_rescore(app, model):
    """Seconds from sending the rescore to the swap, and from the swap to a valid HNSW index."""
    from django.db import connection

    from shopguide.embeddings import has_pgvector
    from shopguide.models import Rescore

    before = Rescore.objects.order_by("-pk").values_list("pk", flat=True).first() or 0
    started = time.perf_counter()
    app.send_task("shopguide.rescore", args=[model.pk, False, False], queue=QUEUE)
    job = wait_for(lambda: Rescore.objects.filter(pk__gt=before).first(), 60, "the rescore to start")
    job = wait_for(
        lambda: Rescore.objects.filter(pk=job.pk).exclude(status="running").first(), 3 * 3600, f"rescore #{job.pk}"
    )
    swapped = time.perf_counter() - started
    if job.status != "succeeded":
        raise SystemExit(f"Rescore #{job.pk} {job.status}: {job.error}")
    index_seconds = None
    if has_pgvector(connection):
        wait_for(index_is_valid, 3600, "the HNSW index")
        index_seconds = time.perf_counter() - started - swapped
    return {
        "products": job.products,
        "seconds": round(swapped, 1),
        "products_per_s": round(job.products / swapped, 1),
        "index_seconds": round(index_seconds, 1) if index_seconds is not None else None,
    }


def incremental(product_model, rounds=5):
    """Seconds from saving a product here to ``recommend()`` here showing its new text first."""
    from shopguide.services import recommend

    product = product_model.objects.filter(in_stock=True).order_by("pk")[1000]
    original = product.title
    recommend("warm up the serving index")
    timings = []
    try:
        for _ in range(rounds):
            words = " ".join(f"zq{uuid.uuid4().hex[:6]}" for _ in range(2))  # in no product's text yet
            started = time.perf_counter()
            product.title = f"{words} {original}"
            product.save()  # the receiver queues the refresh after the commit
            wait_for(
                lambda words=words: (top := recommend(words, limit=1)) and top[0].product.pk == product.pk,
                60,
                "the saved product in the recommendations",
            )
            timings.append(time.perf_counter() - started)
    finally:
        product.title = original
        product.save()
    return [round(seconds, 2) for seconds in timings]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    trained_shop.add_arguments(parser)
    parser.add_argument("--raw-sample", type=int, default=6000, help="products encoded for the raw throughput")
    parser.add_argument(
        "--incremental-only",
        action="store_true",
        help="measure only the incremental refresh; keep the other figures of the last run",
    )
    args = parser.parse_args()
    trained_shop.setup_django(args)
    from config.celery import app
    from shopguide.catalog_source import get_catalog_source
    from shopguide.versions import active_model

    model = active_model()
    if model is None:
        raise SystemExit("No active version: run bench/quality.py --datasets homedepot first.")
    env = dict(os.environ, CELERY_BROKER_URL=app.conf.broker_url)
    with app.connection_for_write() as broker:
        broker.default_channel.queue_purge(QUEUE)
    source = get_catalog_source()
    if args.incremental_only:
        results = json.loads((ROOT / "bench" / "results" / "rescore.json").read_text())
        workers = Workers(env, 1)
        try:
            results["incremental_seconds"] = incremental(source.model)
        finally:
            workers.stop()
        publish("rescore", results, table(results))
        return

    texts = [text for _, text in source.iter_texts()]
    sample = random.Random(3).sample(texts, min(args.raw_sample, len(texts)))
    results = {"catalogue": len(texts), "model_version": model.version}

    print(f"raw encoder throughput on {len(sample)} products ...", flush=True)
    results["raw_products_per_s"] = round(raw_throughput(model, sample), 1)

    workers = Workers(env, 1)
    try:
        print("incremental refresh of a saved product ...", flush=True)
        results["incremental_seconds"] = incremental(source.model)
        print("whole catalogue, one worker ...", flush=True)
        results["one_worker"] = full_rescore(app, model)
    finally:
        workers.stop()
    workers = Workers(env, 2)
    try:
        print("whole catalogue, two workers ...", flush=True)
        results["two_workers"] = full_rescore(app, model)
    finally:
        workers.stop()

    markdown = table(results)
    publish("rescore", results, markdown)


def table(r):
    one, two, raw = r["one_worker"], r["two_workers"], r["raw_products_per_s"]
    index = "no pgvector" if one["index_seconds"] is None else f"{one['index_seconds']} s / {two['index_seconds']} s"
    return "\n".join(
        [
            f"Home Depot catalogue ({r['catalogue']:,} available products), version {r['model_version']}, "
            "every product encoded again, one torch thread per process.",
            "",
            "| measure | result |",
            "|---|---|",
            f"| raw encoder, in one process | {raw} products/s |",
            f"| pipeline, one worker: task sent to vectors swapped | {one['seconds']} s, {one['products_per_s']} products/s "
            f"= {one['products_per_s'] / raw:.0%} of raw |",
            f"| pipeline, two workers | {two['seconds']} s, {two['products_per_s']} products/s "
            f"= {one['seconds'] / two['seconds']:.2f}x faster than one |",
            f"| HNSW index rebuilt after the swap (concurrently; exact search meanwhile) | {index} |",
            f"| a saved product visible in recommend() (5 saves) | median {statistics.median(r['incremental_seconds'])} s, "
            f"max {max(r['incremental_seconds'])} s |",
        ]
    )


if __name__ == "__main__":
    main()
