"""What a stranger's longest query costs: ranking a 256-letter query against ordinary queries.

    .venv/bin/python bench/long_query.py [--data ../shared/data/homedepot] [--rounds 200]

The ranking is the one every path uses (``ml.ranking.VersionRanking``: the encoder, stemmed
and trigram BM25 with the speller, plain fusion) with the base encoder over a real catalogue
(the texts of ``products.csv``). Product vectors are random unit vectors: searching them
costs what searching real ones does, and encoding 55,000 products would only delay the
figures. Each round ranks one ordinary query (the ``dev``/``test`` queries of
``judgments.csv``, none seen before, so nothing is cached) and then one long query (256
random letters as one word, or as words of 8 to 40 letters), so that both see the machine in
the same state. One torch thread. Prints the medians and their ratio, writes
``bench/results/long_query.{json,md}`` and refreshes bench/README.md's table.
"""

import argparse
import csv
import random
import statistics
import string
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from publishing import publish  # noqa: E402

from shopguide.ml.encoder import Encoder, set_torch_threads  # noqa: E402
from shopguide.ml.ranking import CatalogueIndex, VersionRanking, catalogue_order  # noqa: E402
from shopguide.ml.text import normalize_query  # noqa: E402

LENGTH = 256  # letters: the longest query the API and the tags take


def product_texts(folder):
    with open(folder / "products.csv", encoding="utf-8", newline="") as file:
        return {row["product_id"]: f"{row['title']} | {row.get('description', '')}" for row in csv.DictReader(file)}


def held_out_queries(folder):
    with open(folder / "judgments.csv", encoding="utf-8", newline="") as file:
        queries = {normalize_query(row["query"]) for row in csv.DictReader(file) if row.get("split") in ("dev", "test")}
    return sorted(queries)


def long_queries(rng, count):
    """Half one 256-letter word, half 256 letters in words of 8 to 40 letters."""
    queries = []
    for n in range(count):
        letters = "".join(rng.choice(string.ascii_lowercase) for _ in range(LENGTH))
        if n % 2:
            words, at = [], 0
            while at < LENGTH:
                size = rng.randint(8, 40)
                words.append(letters[at : at + size])
                at += size
            letters = " ".join(words)[:LENGTH]
        queries.append(letters)
    return queries


def timed(ranking, query):
    started = time.perf_counter()
    ranking.rank(query)
    return (time.perf_counter() - started) * 1000


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "homedepot")
    parser.add_argument("--rounds", type=int, default=200)
    args = parser.parse_args()
    set_torch_threads(1)
    rng = random.Random(7)

    started = time.monotonic()
    keys, texts = catalogue_order(product_texts(args.data))
    catalogue = CatalogueIndex(keys, texts)
    encoder = Encoder()
    vectors = np.random.default_rng(7).standard_normal((len(keys), encoder.dimensions), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ranking = VersionRanking(encoder, catalogue, vectors)
    longest = catalogue.speller.longest_correctable - 2
    setup = time.monotonic() - started

    ordinary = held_out_queries(args.data)
    rng.shuffle(ordinary)
    for query in ordinary[:5]:  # warm up: first calls load code and fill caches of their own
        ranking.rank(query)
    rounds = min(args.rounds, len(ordinary) - 5)
    ordinary_ms, long_ms = [], []
    for query, stranger in zip(ordinary[5 : 5 + rounds], long_queries(rng, rounds)):
        ordinary_ms.append(timed(ranking, query))
        long_ms.append(timed(ranking, stranger))

    def figures(values):
        values = sorted(values)
        return {"p50_ms": round(statistics.median(values), 2), "p90_ms": round(values[int(0.9 * len(values))], 2)}

    results = {
        "data": args.data.name,
        "products": len(keys),
        "longest_catalogue_word": longest,
        "rounds": rounds,
        "setup_s": round(setup, 1),
        "ordinary": figures(ordinary_ms),
        "long": figures(long_ms),
    }
    results["ratio_p50"] = round(results["long"]["p50_ms"] / results["ordinary"]["p50_ms"], 2)
    markdown = "\n".join(
        [
            f"**{args.data.name}** ({len(keys):,} products; {rounds} rounds, one torch thread; "
            f"setup {results['setup_s']} s)",
            "",
            "| query | p50 ms | p90 ms | p50 vs ordinary |",
            "|---|---|---|---|",
            f"| ordinary held-out query | {results['ordinary']['p50_ms']} | {results['ordinary']['p90_ms']} | 1.00x |",
            f"| 256 random letters (one word, or words of 8-40) | {results['long']['p50_ms']} | "
            f"{results['long']['p90_ms']} | {results['ratio_p50']:.2f}x |",
        ]
    )
    publish("long_query", results, markdown)


if __name__ == "__main__":
    main()
