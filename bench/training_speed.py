"""Training speed: the costly steps of a training run, each next to the way it was done
before, measured in the same run.

    .venv/bin/python bench/training_speed.py [--data ../shared/data/homedepot] [--steps 12]

Reads the Home Depot files directly (no database) and measures, with 2 torch threads:

- retriever training steps (batch 64, one hard negative each, real titles): a batch's product
  texts padded together (``padding_groups=1``) vs in two groups of similar length (the default);
- the same steps in float32 vs bfloat16 matrix products (``PRECISION``);
- encoding catalogue titles in float32 vs bfloat16, and how far the vectors differ;
- encoding them with torch (float32, and bfloat16) vs the ONNX export with onnxruntime (what
  rescoring chooses between), and how far those vectors differ.

It prints a table and writes ``bench/results/training_speed.{json,md}`` and bench/README.md's
table; ``--only-encoding`` measures the encoding alone (``encoding_speed.{json,md}``).
"""

import argparse
import csv
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from publishing import publish  # noqa: E402

from shopguide.ml import version_files  # noqa: E402
from shopguide.ml.encoder import Encoder  # noqa: E402
from shopguide.ml.onnx_encoder import OnnxEncoder  # noqa: E402
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


def step_seconds(titles, judged, steps, groups=2, precision="float32", seed=7):
    """Seconds per retriever training step, padding product texts in ``groups`` groups."""
    rng = random.Random(seed)
    keys = list(titles)
    queries = rng.sample(sorted(judged), steps * 64)
    pairs = [Pair(query, judged[query][0], [rng.choice(keys)]) for query in queries]
    config = BiEncoderConfig(batch_size=64, padding_groups=groups)
    encoder = Encoder(precision=precision)
    started = time.perf_counter()
    train_bi_encoder(encoder, pairs, titles, {}, config)
    return (time.perf_counter() - started) / steps


def encoding(titles, count, seed=7, threads=2):
    """Titles per second encoded by torch in float32 and in bfloat16 and by the ONNX export
    (onnxruntime, float32), taken in turns batch by batch so that all see the machine in the
    same state; the smallest cosine of each to torch's float32 vectors of a title."""
    texts = random.Random(seed).sample(sorted(titles.values()), count)
    exact = Encoder(precision="float32")
    with tempfile.TemporaryDirectory() as folder:
        exact.save(Path(folder) / version_files.ENCODER_FOLDER)
        exact.export_onnx(Path(folder) / version_files.ONNX_FILE)
        encoders = {
            "float32": exact,
            "bfloat16": Encoder(precision="bfloat16"),
            "onnx": OnnxEncoder(
                Path(folder) / version_files.ONNX_FILE, Path(folder) / version_files.ENCODER_FOLDER, threads
            ),
        }
        seconds, vectors = dict.fromkeys(encoders, 0.0), {name: [] for name in encoders}
        for start in range(0, count, 512):
            for name, encoder in encoders.items():
                started = time.perf_counter()
                vectors[name].append(encoder.encode(texts[start : start + 512]))
                seconds[name] += time.perf_counter() - started
    import numpy as np

    vectors = {name: np.concatenate(parts) for name, parts in vectors.items()}
    speeds = {name: count / seconds[name] for name in encoders}
    cosines = {name: float((vectors["float32"] * vectors[name]).sum(axis=1).min()) for name in ("bfloat16", "onnx")}
    return speeds, cosines


def encoding_rows(speeds, cosines):
    return [
        f"| encoding titles: float32 / bfloat16 (smallest cosine between the two vectors {cosines['bfloat16']:.5f}) | "
        f"{speeds['float32']:.0f}/s | {speeds['bfloat16']:.0f}/s | {speeds['bfloat16'] / speeds['float32']:.2f}x |",
        f"| encoding titles: torch float32 / ONNX export with onnxruntime (smallest cosine {cosines['onnx']:.5f}) | "
        f"{speeds['float32']:.0f}/s | {speeds['onnx']:.0f}/s | {speeds['onnx'] / speeds['float32']:.2f}x |",
    ]


def main():
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "homedepot")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--titles", type=int, default=4000)
    parser.add_argument("--only-encoding", action="store_true", help="skip the training steps")
    args = parser.parse_args()
    torch.set_num_threads(2)
    titles, judged = read_data(args.data)
    if args.only_encoding:
        print(f"encoding {args.titles} titles each way ...", flush=True)
        speeds, cosines = encoding(titles, args.titles)
        results = {
            "titles_per_second": {name: round(speed) for name, speed in speeds.items()},
            "smallest_cosine": cosines,
        }
        markdown = "\n".join(
            [
                f"Home Depot titles, 2 threads, {args.titles:,} titles encoded each way, in turns.",
                "",
                "| step | before | now | speed-up |",
                "|---|---|---|---|",
                *encoding_rows(speeds, cosines),
            ]
        )
        publish("encoding_speed", results, markdown)
        return

    print(f"retriever steps ({args.steps} each way) ...", flush=True)
    plain = step_seconds(titles, judged, args.steps, groups=1)
    grouped = step_seconds(titles, judged, args.steps, groups=2)
    fast = step_seconds(titles, judged, args.steps, precision="bfloat16")
    print(f"encoding {args.titles} titles each way ...", flush=True)
    speeds, cosines = encoding(titles, args.titles)
    results = {
        "retriever_step_seconds": {
            "padded_together": round(plain, 2),
            "two_length_groups": round(grouped, 2),
            "two_length_groups_bfloat16": round(fast, 2),
        },
        "titles_per_second": {name: round(speed) for name, speed in speeds.items()},
        "smallest_cosine": cosines,
        "steps": args.steps,
        "titles": args.titles,
    }
    markdown = "\n".join(
        [
            f"Home Depot titles, 2 torch threads; {args.steps} retriever steps each way (batch 64 + 64 hard negatives), "
            f"{args.titles:,} titles encoded each way.",
            "",
            "| step | before | now | speed-up |",
            "|---|---|---|---|",
            f"| retriever training step: product texts padded together / in two length groups | {plain:.2f} s | "
            f"{grouped:.2f} s | {plain / grouped:.2f}x |",
            f"| retriever training step (two groups): float32 / bfloat16 matrix products | {grouped:.2f} s | "
            f"{fast:.2f} s | {grouped / fast:.2f}x |",
            *encoding_rows(speeds, cosines),
        ]
    )
    publish("training_speed", results, markdown)


if __name__ == "__main__":
    main()
