"""Team-draft interleaving: which of two rankings shoppers prefer, read from their clicks.

An A/B test shows each group of shoppers one ranking and compares click rates between groups, so
a difference between rankings must show through the differences between people and queries.
Interleaving shows each shopper one list drawn from both rankings and credits each click to the
ranking that contributed the clicked product: every shown list compares the two rankings on the
same shopper and query, which is why it needs far fewer impressions to find the same difference
(team draft: Radlinski, Kurup and Joachims, 2008; its sensitivity against A/B tests measured at
scale: Chapelle, Joachims, Radlinski and Yue, "Large-scale validation and analysis of
interleaved search evaluation", 2012).

Ranking "a" is the one serving, "b" the candidate. ``team_draft`` builds a shown list,
``credit`` reads the outcome of one, ``compare`` sums outcomes into a verdict.
"""

import math
import random
from collections import Counter
from dataclasses import dataclass
from statistics import NormalDist

TEAMS = ("a", "b")
OUTCOMES = ("a", "b", "tie")
CONFIDENCE = 0.95
NO_PREFERENCE = 0.5  # the candidate's share of decided comparisons when shoppers prefer neither


def team_draft(a, b, rng_or_seed, limit):
    """``(keys, teams)``: the list to show for rankings ``a`` and ``b`` (product keys, best
    first), at most ``limit`` keys, and ``{key: "a" or "b"}``, the team that contributed each
    (what ``credit`` reads).

    Each round the team with fewer picks takes its best key not shown yet, and once one ranking
    is used up the other fills the list. At equal picks a coin decides who goes first: without
    it the same team would always hold the top position, the one shoppers click most, and two
    identical rankings would not come out even.

    ``rng_or_seed`` is a ``random.Random`` or a seed for one (an int, str or bytes). The list is
    a function of the rankings and the seed, so the server can recompute what a shopper was
    shown instead of storing it. ``random.Random`` rather than numpy: Python guarantees the
    sequence of ``random()`` for a seed across versions, numpy's ``Generator`` does not, and a
    list shown before an upgrade must still be recomputed after it.
    """
    rng = rng_or_seed if isinstance(rng_or_seed, random.Random) else random.Random(rng_or_seed)
    rankings = {"a": list(a), "b": list(b)}
    cursors = dict.fromkeys(TEAMS, 0)
    picks = dict.fromkeys(TEAMS, 0)
    teams = {}
    while len(teams) < limit:
        offers = {}
        for team, ranking in rankings.items():
            while cursors[team] < len(ranking) and ranking[cursors[team]] in teams:
                cursors[team] += 1
            if cursors[team] < len(ranking):
                offers[team] = ranking[cursors[team]]
        if not offers:
            break
        if len(offers) == 1:
            (team,) = offers
        elif picks["a"] == picks["b"]:
            team = "a" if rng.random() < 0.5 else "b"
        else:
            team = min(TEAMS, key=picks.get)
        teams[offers[team]] = team
        picks[team] += 1
    return list(teams), teams


def credit(teams, clicked_keys):
    """The outcome of one shown list: "a" or "b", the team whose products were clicked more, or
    "tie" (no clicks, or as many on each side).

    ``teams`` is ``team_draft``'s ``{key: team}``. A product clicked twice counts once: coming
    back to a product says no more about the ranking than the first click did. Clicks on keys
    not in the list (a product reached another way) are evidence about neither ranking and are
    ignored.
    """
    clicks = Counter(teams[key] for key in set(clicked_keys) if key in teams)
    if clicks["a"] == clicks["b"]:
        return "tie"
    return "a" if clicks["a"] > clicks["b"] else "b"


def wilson_interval(successes, trials, confidence=CONFIDENCE):
    """``(low, high)``: the Wilson score interval of a binomial proportion, or None without
    trials. Wilson's rather than share ± 1.96 standard errors (Wald's): with few trials, or a
    share near 0 or 1, Wald's is too narrow and can leave [0, 1], while Wilson's keeps close to
    its stated coverage (Brown, Cai and DasGupta, 2001), which matters early in a comparison.
    """
    if trials == 0:
        return None
    z = NormalDist().inv_cdf((1 + confidence) / 2)
    share = successes / trials
    scale = 1 + z * z / trials
    centre = (share + z * z / (2 * trials)) / scale
    half_width = z / scale * math.sqrt(share * (1 - share) / trials + z * z / (4 * trials * trials))
    return centre - half_width, centre + half_width


@dataclass(frozen=True)
class Comparison:
    """The candidate ("b") against the serving ranking ("a") over many shown lists.

    ``share`` is the candidate's share of the decided comparisons, ``wins / (wins + losses)``,
    with its 95% Wilson interval. Ties are left out of it: a tie (most often a list nobody
    clicked) says nothing about which ranking is better, and counting ties as half a win would
    pull the share toward 0.5 by an amount set by how often shoppers click, not by the rankings.
    Among decided comparisons "no preference" is exactly a share of 0.5 (the sign test), so the
    difference is ``significant`` when the interval leaves 0.5 out.
    """

    wins: int
    losses: int
    ties: int

    @property
    def n(self):
        return self.wins + self.losses + self.ties

    @property
    def decided(self):
        return self.wins + self.losses

    @property
    def share(self):
        return self.wins / self.decided if self.decided else None

    @property
    def interval(self):
        return wilson_interval(self.wins, self.decided)

    @property
    def significant(self):
        return self.interval is not None and not self.interval[0] <= NO_PREFERENCE <= self.interval[1]

    @property
    def verdict(self):
        if not self.significant:
            return "no significant difference"
        return "better" if self.share > NO_PREFERENCE else "worse"


def compare(outcomes):
    """The ``Comparison`` of ``credit`` outcomes ("a", "b" or "tie"), "b" being the candidate."""
    counts = Counter(outcomes)
    unknown = set(counts) - set(OUTCOMES)
    if unknown:
        names = ", ".join(sorted(map(repr, unknown)))
        raise ValueError(f"Unknown interleaving outcomes {names}: each must be 'a', 'b' or 'tie'.")
    return Comparison(wins=counts["b"], losses=counts["a"], ties=counts["tie"])
