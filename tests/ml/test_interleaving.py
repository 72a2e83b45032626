"""Team-draft interleaving (shopguide.ml.interleaving), and the issue's acceptance test: on
simulated shoppers whose clicks follow real judgments, a candidate that is better on those
judgments wins in at least 19 of 20 runs of ``IMPRESSIONS`` shown lists, and two identical
versions show no significant winner in at least 18 of 20.

The judgments are CrowdFlower's, read from ``$SHOPGUIDE_DATA/crowdflower`` (by default
``../shared/data`` beside the repository) and never copied into it. Where that folder is missing
(a clone elsewhere) the acceptance test runs on the bundled demo shop's judgments instead: same
format, but grades made by hand for 40 queries, so it always runs.

The simulation lives here, next to the bars it is held to; bench/interleaving.py imports it to
show how the verdicts depend on the run size.
"""

import csv
import os
import random
from pathlib import Path

import numpy as np
import pytest

from shopguide.ml.interleaving import compare, credit, team_draft
from shopguide.ml.metrics import evaluate_run

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("SHOPGUIDE_DATA", ROOT.parent / "shared" / "data"))
DEMO_JUDGMENTS = ROOT / "catalog" / "demo_data" / "judgments.csv"

RUNS = 20
# Shown lists per run: the smallest of 1,000, 2,000 and 3,000 at which the better candidate was
# found better in 99 of 100 runs (77 at 1,000); `bench/interleaving.py --runs 100` shows it.
IMPRESSIONS = 2000
SHOWN = 10  # products on a shown list
# Two simulated versions rank each query's judged products by grade plus Gaussian noise, the
# candidate with less noise: nDCG@10 0.87 against 0.96 on CrowdFlower. Most products judged there
# are grade 3, so a ranking's faults lie below the first positions, where fewer shoppers look: a
# smaller gap needs more impressions than a test of a few seconds can simulate.
SERVING_NOISE, CANDIDATE_NOISE = 3.0, 1.0
# Position-based click model: a shopper looks at position i (from 1) with chance 1 / i**0.8, and
# clicks a product looked at with chance STRAY_CLICK + GRADED_CLICK * grade / top grade, from 0.05
# (a stray click) at grade 0 to 0.75 at the top grade.
EXAMINATION = (1 / np.arange(1, SHOWN + 1) ** 0.8).tolist()
STRAY_CLICK, GRADED_CLICK = 0.05, 0.7


def judgment_files():
    """``{dataset: judgments.csv}``: CrowdFlower's where SHOPGUIDE_DATA has it, else the demo's."""
    crowdflower = DATA / "crowdflower" / "judgments.csv"
    return {"crowdflower": crowdflower} if crowdflower.exists() else {"demo": DEMO_JUDGMENTS}


def read_judgments(path):
    """``{query: {product id: grade}}`` from a judgments.csv (query, product_id, grade, ...)."""
    qrels = {}
    with open(path, newline="") as file:
        for row in csv.DictReader(file):
            qrels.setdefault(row["query"], {})[row["product_id"]] = float(row["grade"])
    return qrels


def simulated_version(qrels, noise, seed):
    """``{query: ranking}``: each query's judged products by grade plus Gaussian ``noise``."""
    rng = np.random.default_rng(seed)
    run = {}
    for query, judged in sorted(qrels.items()):
        products = list(judged)
        scores = np.array([judged[product] for product in products]) + rng.normal(0, noise, len(products))
        run[query] = [products[index] for index in np.argsort(-scores)]
    return run


def serving_and_candidate(qrels):
    """The two simulated versions compared: the serving one, and a less noisy candidate."""
    return simulated_version(qrels, SERVING_NOISE, seed=1), simulated_version(qrels, CANDIDATE_NOISE, seed=2)


def simulate_run(qrels, serving, candidate, impressions, seed):
    """The ``Comparison`` of ``candidate`` against ``serving`` over ``impressions`` shoppers, each
    searching a query drawn at random, shown the team-draft list of the two versions' rankings,
    and clicking as the position-based model says."""
    rng = np.random.default_rng(seed)
    queries = sorted(qrels)
    top_grade = max(grade for judged in qrels.values() for grade in judged.values())
    coin = random.Random(seed)
    looks = rng.random((impressions, SHOWN)).tolist()
    attractions = rng.random((impressions, SHOWN)).tolist()
    outcomes = []
    for query_index, look, attraction in zip(rng.integers(len(queries), size=impressions), looks, attractions):
        query = queries[query_index]
        keys, teams = team_draft(serving[query], candidate[query], coin, SHOWN)
        clicked = [
            key
            for position, key in enumerate(keys)
            if look[position] < EXAMINATION[position]
            and attraction[position] < STRAY_CLICK + GRADED_CLICK * qrels[query][key] / top_grade
        ]
        outcomes.append(credit(teams, clicked))
    return compare(outcomes)


# The algorithm


def replayed(keys, teams, a, b):
    """Whether each key is its team's best not shown before it, as team draft picks them."""
    rankings = {"a": a, "b": b}
    return all(
        key == next(candidate for candidate in rankings[teams[key]] if candidate not in keys[:position])
        for position, key in enumerate(keys)
    )


def test_each_shown_key_is_the_best_left_of_the_team_it_is_credited_to():
    a, b = ["p", "q", "r", "s", "t"], ["r", "s", "u", "p", "v"]
    for seed in range(200):
        keys, teams = team_draft(a, b, seed, limit=7)
        assert len(keys) == len(set(keys)) == 7
        assert list(teams) == keys
        assert replayed(keys, teams, a, b)
        prefix_picks = np.cumsum([1 if teams[key] == "a" else -1 for key in keys])
        assert np.abs(prefix_picks).max() <= 1  # neither team gets two picks ahead of the other


def test_the_limit_is_respected_and_a_used_up_ranking_leaves_the_rest_to_the_other():
    a, b = ["p", "q"], ["r", "s", "t", "u"]
    assert len(team_draft(a, b, 0, limit=3)[0]) == 3
    keys, teams = team_draft(a, b, 0, limit=10)
    assert sorted(keys) == ["p", "q", "r", "s", "t", "u"]
    assert [teams[key] for key in keys[-2:]] == ["b", "b"]
    assert team_draft([], b, 0, limit=10) == (b, dict.fromkeys(b, "b"))
    assert team_draft([], [], 0, limit=10) == ([], {})
    assert team_draft(a, b, 0, limit=0) == ([], {})


def test_the_same_seed_gives_the_same_list():
    a, b = list("abcdefghij"), list("jihgfedcba")
    assert team_draft(a, b, "shopper-query-key", 10) == team_draft(a, b, "shopper-query-key", 10)
    assert team_draft(a, b, 7, 10) == team_draft(a, b, random.Random(7), 10)
    assert len({tuple(team_draft(a, b, seed, 10)[0]) for seed in range(50)}) > 1


def test_identical_rankings_favour_neither_team():
    ranking = list("abcdefghij")
    drafts = [team_draft(ranking, ranking, seed, limit=5) for seed in range(4000)]
    assert all(keys == ranking[:5] for keys, _ in drafts)
    first_to_a = sum(teams["a"] == "a" for _, teams in drafts) / len(drafts)
    picks_to_a = sum(list(teams.values()).count("a") for _, teams in drafts) / (5 * len(drafts))
    assert first_to_a == pytest.approx(0.5, abs=0.03)  # 4,000 fair coins: one standard deviation is 0.008
    assert picks_to_a == pytest.approx(0.5, abs=0.03)


def test_credit_goes_to_the_team_with_more_clicked_products():
    teams = {"p": "a", "q": "b", "r": "a", "s": "b"}
    assert credit(teams, []) == "tie"
    assert credit(teams, ["q"]) == "b"
    assert credit(teams, ["p", "q"]) == "tie"
    assert credit(teams, ["p", "r", "q"]) == "a"
    assert credit(teams, ["q", "q", "p"]) == "tie"  # a product clicked twice counts once
    assert credit(teams, ["elsewhere", "other", "p"]) == "a"  # clicks on products not shown are ignored
    assert credit(teams, ["elsewhere"]) == "tie"


def test_the_comparison_counts_outcomes_and_its_wilson_interval_is_right():
    comparison = compare(["b"] * 60 + ["a"] * 40 + ["tie"] * 900)
    assert (comparison.wins, comparison.losses, comparison.ties, comparison.n) == (60, 40, 900, 1000)
    assert comparison.share == 0.6  # ties are left out
    # By hand, z = 1.96 and n = 100 decided: (0.6 + z²/200 ± z √(0.24/100 + z²/40000)) / (1 + z²/100).
    assert comparison.interval == pytest.approx((0.5020, 0.6906), abs=1e-4)
    assert comparison.significant and comparison.verdict == "better"
    assert compare(["a"] * 60 + ["b"] * 40).verdict == "worse"
    assert compare(["a"] * 45 + ["b"] * 55).verdict == "no significant difference"


def test_no_decided_comparison_has_no_interval():
    for outcomes in ([], ["tie"] * 5):
        comparison = compare(outcomes)
        assert comparison.share is None and comparison.interval is None
        assert not comparison.significant
        assert comparison.verdict == "no significant difference"


def test_an_unknown_outcome_is_refused():
    with pytest.raises(ValueError, match="'B'"):
        compare(["a", "B"])


# The acceptance test


@pytest.fixture(scope="module", params=sorted(judgment_files().items()), ids=lambda item: item[0])
def shop(request):
    """``(qrels, serving, candidate)`` for a dataset present on this machine."""
    qrels = read_judgments(request.param[1])
    return qrels, *serving_and_candidate(qrels)


def verdicts(qrels, serving, candidate, impressions=IMPRESSIONS, runs=RUNS):
    """The verdicts of ``runs`` simulated runs, seeded 0, 1, ... so that they are the same each time."""
    return [simulate_run(qrels, serving, candidate, impressions, seed=run).verdict for run in range(runs)]


def test_a_candidate_better_on_the_judgments_is_found_better(shop):
    qrels, serving, candidate = shop
    assert evaluate_run(candidate, qrels)["ndcg@10"] > evaluate_run(serving, qrels)["ndcg@10"]
    assert verdicts(qrels, serving, candidate).count("better") >= 19


def test_identical_versions_show_no_significant_difference(shop):
    qrels, serving, _ = shop
    assert verdicts(qrels, serving, serving).count("no significant difference") >= 18


def test_a_worse_candidate_is_never_found_better(shop):
    qrels, serving, candidate = shop
    assert "better" not in verdicts(qrels, candidate, serving)
