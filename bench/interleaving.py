"""Interleaving sensitivity: how many shown lists team-draft interleaving needs to tell two
rankings apart, on shoppers simulated from CrowdFlower's judgments.

    .venv/bin/python bench/interleaving.py [--data ../shared/data] [--impressions 250 500 1000 2000 4000] [--runs 20]

The versions and the click model are the acceptance test's (tests/ml/test_interleaving.py):
each query's judged products ranked by grade plus Gaussian noise, with less noise for the
candidate, and a position-based click model. It prints both versions' nDCG@10 on the judgments
and, for each run size, the share of runs in which the better candidate is found significantly
better (the test asks for 95%) and the share in which two identical versions are wrongly called
different (the test allows 10%). Runs are seeded 0, 1, ... as the test's are, so the first 20
at the test's run size are the test's own. Plain Python and numpy: no database. Writes
``bench/results/interleaving.{json,md}`` and refreshes bench/README.md's table.
"""

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from publishing import publish  # noqa: E402

from shopguide.ml.metrics import evaluate_run  # noqa: E402
from tests.ml.test_interleaving import read_judgments, serving_and_candidate, verdicts  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--impressions", type=int, nargs="+", default=[250, 500, 1000, 2000, 4000])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()

    judgments = args.data / "crowdflower" / "judgments.csv"
    if not judgments.exists():
        parser.error(f"{judgments} is missing: pass --data, the folder holding crowdflower/")
    qrels = read_judgments(judgments)
    serving, candidate = serving_and_candidate(qrels)
    metrics = evaluate_run(serving, qrels)
    serving_ndcg, candidate_ndcg = metrics["ndcg@10"], evaluate_run(candidate, qrels)["ndcg@10"]

    lines = [
        f"CrowdFlower's judgments ({metrics['queries']} queries): serving version nDCG@10 {serving_ndcg:.3f}, "
        f"candidate {candidate_ndcg:.3f}; {args.runs} simulated runs per size.",
        "",
        "| shown lists per run | better candidate found better | identical versions called different |",
        "|---:|---:|---:|",
    ]
    results = {"serving_ndcg": serving_ndcg, "candidate_ndcg": candidate_ndcg, "runs": args.runs, "sizes": []}
    for impressions in args.impressions:
        found = verdicts(qrels, serving, candidate, impressions, args.runs).count("better") / args.runs
        kept = verdicts(qrels, serving, serving, impressions, args.runs).count("no significant difference")
        wrong = 1 - kept / args.runs
        results["sizes"].append({"impressions": impressions, "found_better": found, "false_difference": wrong})
        lines.append(f"| {impressions:,} | {found:.0%} | {wrong:.0%} |")
    publish("interleaving", results, "\n".join(lines))


if __name__ == "__main__":
    main()
