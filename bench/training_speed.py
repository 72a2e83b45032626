"""Training speed: the costly steps of a training run, each next to the way it was done
before, measured in the same run.

    .venv/bin/python bench/training_speed.py [--data ../shared/data/homedepot] [--steps 12]

Reads the Home Depot files directly (no database) and measures, with 2 torch threads:

- retriever training steps (batch 64, one hard negative each, real titles): a batch's product
  texts padded together (``padding_groups=1``) vs in two groups of similar length (the default);
- mining hard negatives for training queries over a 10,000-product slice of the catalogue:
  the full hybrid rankings (lexical side and ranking features included) vs the encoder's own
  top results, which is all mining uses.

It prints a table and writes ``bench/results/training_speed.{json,md}`` and README's table.
"""

import argparse
import csv
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from publishing import publish  # noqa: E402

from shopguide.ml.encoder import Encoder  # noqa: E402
from shopguide.ml.pipeline import CatalogueIndex, Retriever  # noqa: E402
from shopguide.ml.text import normalize_query  # noqa: E402
from shopguide.ml.training import BiEncoderConfig, Pair, train_bi_encoder  # noqa: E402


def read_data(folder):
    with open(folder / "products.csv", newline="") as file:
        titles = {row["product_id"]: row["title"] for row in csv.DictReader(file)}
    judged = {}
    with open(folder / "judgments.csv", newline="") as file:
        for row in csv.DictReader(file):
            if row.get("split", "train") == "train" and float(row["grade"]) >= 1.0:
                judged.setdefault(normalize_query(row["query"]), []).append(row["product_id"])
    return titles, judged


def step_seconds(titles, judged, steps, groups, seed=7):
    """Seconds per retriever training step, padding product texts in ``groups`` groups."""
    rng = random.Random(seed)
    keys = list(titles)
    queries = rng.sample(sorted(judged), steps * 64)
    pairs = [Pair(query, judged[query][0], [rng.choice(keys)]) for query in queries]
    config = BiEncoderConfig(batch_size=64, padding_groups=groups)
    encoder = Encoder()
    started = time.perf_counter()
    train_bi_encoder(encoder, pairs, titles, {}, config)
    return (time.perf_counter() - started) / steps


def mining_seconds(titles, judged, products, queries, seed=7):
    """Seconds per query to rank a slice of the catalogue for mining: (full rankings, dense only)."""
    rng = random.Random(seed)
    keys = rng.sample(sorted(titles), products)
    texts = [titles[key] for key in keys]
    encoder = Encoder()
    retriever = Retriever(encoder, CatalogueIndex(keys, texts), encoder.encode(texts))
    sample = rng.sample(sorted(judged), queries)
    timings = []
    for mine in (lambda: retriever.rankings(sample)[0], lambda: retriever.dense(sample, 30)):
        started = time.perf_counter()
        mine()
        timings.append((time.perf_counter() - started) / queries)
    return timings


def main():
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "homedepot")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--queries", type=int, default=400)
    args = parser.parse_args()
    torch.set_num_threads(2)
    titles, judged = read_data(args.data)

    print(f"retriever steps ({args.steps} each way) ...", flush=True)
    plain = step_seconds(titles, judged, args.steps, groups=1)
    grouped = step_seconds(titles, judged, args.steps, groups=2)
    print(f"mining negatives for {args.queries} queries ...", flush=True)
    full, dense = mining_seconds(titles, judged, 10_000, args.queries)
    results = {
        "retriever_step_seconds": {"padded_together": round(plain, 2), "two_length_groups": round(grouped, 2)},
        "mining_ms_per_query": {"full_rankings": round(full * 1000, 1), "dense_only": round(dense * 1000, 1)},
        "steps": args.steps, "queries": args.queries,
    }
    markdown = "\n".join([
        f"Home Depot titles, 2 torch threads; {args.steps} retriever steps each way (batch 64 + 64 hard negatives), "
        f"mining for {args.queries} training queries over 10,000 products.",
        "",
        "| step | before | now | speed-up |",
        "|---|---|---|---|",
        f"| retriever training step: product texts padded together / in two length groups | {plain:.2f} s | "
        f"{grouped:.2f} s | {plain / grouped:.2f}x |",
        f"| mining hard negatives, per query: full hybrid rankings / the encoder's top 30 | {full * 1000:.1f} ms | "
        f"{dense * 1000:.1f} ms | {full / dense:.1f}x |",
    ])
    publish("training_speed", results, markdown)


if __name__ == "__main__":
    main()
