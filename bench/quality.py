"""Quality benchmark: train on real shop data, evaluate every strategy on held-out queries.

    .venv/bin/python bench/quality.py [--data ../shared/data] [--datasets homedepot crowdflower]

For each dataset it makes a fresh database, loads the folder, trains with
``shopguide_train --sync`` on the ``train`` split (timed, with its peak resident memory),
activates the version and runs ``shopguide_evaluate --json`` on the held-out split
(homedepot ``dev``, crowdflower ``test``), all through the project's own commands. It
prints a table, writes ``bench/results/quality.json`` and ``quality.md``, and refreshes
bench/README.md's quality table.
Baselines and shopguide are measured side by side in the same run.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import trained_shop  # noqa: E402
from publishing import publish  # noqa: E402

from config import embedded  # noqa: E402
from config.database_url import parse_database_url  # noqa: E402

HELDOUT_SPLIT = {"homedepot": "dev", "crowdflower": "test"}
STRATEGY_NAMES = {
    "postgres_fts": "PostgreSQL full-text search, Django default (all words)",
    "bm25": "BM25, stemmed (standard tokenizer)",
    "bm25_products": "shopguide BM25 (product tokenizer, spelling corrected)",
    "zero_shot": "all-MiniLM-L6-v2 zero-shot",
    "fine_tuned": "shopguide fine-tuned bi-encoder",
    "hybrid": "shopguide hybrid (fine-tuned + BM25 + trigram BM25 + search memory, learned fusion)",
    "hybrid_reranked": "shopguide hybrid + reranker",
    "hybrid_torch": "shopguide hybrid, queries encoded by torch instead of the ONNX export web processes use",
}


def database_url(name):
    """A fresh database named ``name`` on DATABASE_URL's server, or on the embedded one."""
    import psycopg

    config = parse_database_url(os.environ.get("DATABASE_URL") or embedded.postgres_url())
    admin = psycopg.connect(
        dbname="postgres",
        user=config["USER"] or "postgres",
        password=config["PASSWORD"],
        host=config["HOST"],
        port=config["PORT"] or None,
        autocommit=True,
    )
    with admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.execute(f'CREATE DATABASE "{name}"')
    return trained_shop.database_url(name)


def manage(env, *args, capture=False):
    command = [sys.executable, "manage.py", *args]
    print("$", " ".join(command[1:]), flush=True)
    result = subprocess.run(
        command, cwd=ROOT, env=env, check=True, text=True, stdout=subprocess.PIPE if capture else None
    )
    return result.stdout


def manage_peak_gb(env, *args):
    """Run a command like ``manage`` and return its peak resident memory in GB."""
    command = [sys.executable, "manage.py", *args]
    print("$", " ".join(command[1:]), flush=True)
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, command)
    return usage.ru_maxrss / 2**20  # kB on Linux


def bench_dataset(name, folder, train_args):
    env = dict(
        os.environ,
        DATABASE_URL=database_url(f"shopguide_bench_{name}"),
        MEDIA_ROOT=str(ROOT / "var" / "bench" / name),
        PYTHONUNBUFFERED="1",
    )
    env.setdefault("TORCH_THREADS", "2")
    manage(env, "migrate", "--noinput", "-v", "0")
    manage(env, "createcachetable")
    manage(env, "load_catalog", str(folder))
    started = time.monotonic()
    peak_gb = manage_peak_gb(env, "shopguide_train", "--sync", "--activate", *train_args)
    training_seconds = time.monotonic() - started
    results = json.loads(
        manage(
            env,
            "shopguide_evaluate",
            "--judgments",
            str(folder / "judgments.csv"),
            "--split",
            HELDOUT_SPLIT[name],
            "--json",
            capture=True,
        )
    )
    return {
        "split": HELDOUT_SPLIT[name],
        "training_seconds": round(training_seconds),
        "training_peak_gb": round(peak_gb, 2),
        "strategies": results,
    }


def table(name, outcome):
    strategies = outcome["strategies"]
    bm25 = strategies["bm25"]["ndcg@10"]
    lines = [
        f"**{name}** (`{outcome['split']}` split, {strategies['bm25']['queries']} queries, whole catalogue; "
        f"training took {outcome['training_seconds'] / 60:.1f} min"
        + (f", peak memory {outcome['training_peak_gb']:.1f} GB" if "training_peak_gb" in outcome else "")
        + ")",
        "",
        "| strategy | nDCG@10 | vs BM25 | condensed nDCG@10 | Recall@100 | MRR |",
        "|---|---|---|---|---|---|",
    ]
    for key, label in STRATEGY_NAMES.items():
        metrics = strategies.get(key, {"skipped": "not measured in this run"})
        if "skipped" in metrics:
            lines.append(f"| {label} | skipped: {metrics['skipped']} | | | | |")
            continue
        lines.append(
            f"| {label} | {metrics['ndcg@10']:.3f} | {metrics['ndcg@10'] / bm25:.2f}x | "
            f"{metrics['condensed_ndcg@10']:.3f} | {metrics['recall@100']:.3f} | {metrics['mrr']:.3f} |"
        )
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--datasets", nargs="+", default=list(HELDOUT_SPLIT), choices=list(HELDOUT_SPLIT))
    parser.add_argument("--train-args", default="", help="extra shopguide_train options, e.g. '--max-pairs 8000'")
    args = parser.parse_args()

    # A run of some datasets keeps the last figures of the others (each dataset's figures come
    # from one run: its baselines and shopguide side by side).
    previous = ROOT / "bench" / "results" / "quality.json"
    outcomes = json.loads(previous.read_text()) if previous.is_file() else {}
    for name in args.datasets:
        outcomes[name] = bench_dataset(name, args.data / name, args.train_args.split())
    markdown = "\n\n".join(table(name, outcomes[name]) for name in HELDOUT_SPLIT if name in outcomes)
    publish("quality", outcomes, markdown)


if __name__ == "__main__":
    main()
