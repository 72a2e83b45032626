"""Online comparison of a candidate version with the serving one, by team-draft interleaving.

While a comparison runs, a share of shoppers (``ONLINE_SHARE``, chosen by a keyed hash of the
shopper and the comparison, so that a shopper stays in or out of it throughout) are shown, in
the strip, one list drawn from both versions' rankings (``ml.interleaving.team_draft``, seeded
by comparison, shopper and query: a shopper sees the same list for a query each time). The
list is stored after the response; each click the shopper's page then reports in the strip
is credited to the version that contributed the product (``credit_clicks``).

Only shoppers with a session take part: their identity, and so their list, holds from page to
page. Each voter (one per client network: see ``shoppers``) has one vote, the version that won
more of the queries it searched (for each query the first list shown): a stranger sways one
vote, however many queries, tokens or clicks they send. Checking the verdict as votes come in
("peeking") makes a false winner likelier than the 5% of one look, which is why nothing is
acted upon before ``ONLINE_MIN_DECIDED`` decided votes.

The candidate ranks in each web process with its own vectors of the serving catalogue (those
its training stored; products changed since are encoded), loaded in the background on first
need: until it is loaded, and for the other shoppers, the serving version's list is shown. A
candidate that cannot be loaded in a web process (a reranker or no ONNX export, where the web
install has no torch) ends the comparison, with the reason on its page.
"""

import logging
import threading
import time
from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from .conf import shopguide_settings
from .ml.interleaving import compare, credit, team_draft
from .models import InterleavedList, OnlineComparison, normalized_for_column
from .shoppers import keyed_hash, read_token, shopper_token

logger = logging.getLogger(__name__)

RUNNING_TTL = 5.0  # seconds a process trusts its knowledge of the running comparison


class _Running:
    comparison, read_at = None, float("-inf")


def running():
    """The running comparison, or None (read at most every ``RUNNING_TTL`` seconds)."""
    now = time.monotonic()
    if now - _Running.read_at > RUNNING_TTL:
        _Running.comparison = (
            OnlineComparison.objects.select_related("candidate", "serving")
            .filter(status=OnlineComparison.Status.RUNNING)
            .first()
        )
        _Running.read_at = now
    return _Running.comparison


def forget(**kwargs):
    """Read the running comparison afresh on next use (a comparison changed in this process)."""
    _Running.read_at = float("-inf")


post_save.connect(forget, sender=OnlineComparison, dispatch_uid="shopguide.online.saved")
post_delete.connect(forget, sender=OnlineComparison, dispatch_uid="shopguide.online.deleted")


def in_share(comparison, shopper_id):
    """Whether ``shopper_id`` is among the ``ONLINE_SHARE`` of shoppers ``comparison`` shows
    interleaved lists to."""
    draw = int(keyed_hash("online-share", f"{comparison.pk}:{shopper_id}"), 16) / 16**32
    return draw < shopguide_settings.ONLINE_SHARE


class CandidateRankings:
    """The candidate's ranking in this process, over the serving index's catalogue: one per
    comparison and serving epoch, loaded in a background thread."""

    _lock = threading.Lock()
    _loaded = {}  # comparison pk -> (serving epoch, ranking)
    _loading = set()

    @classmethod
    def get(cls, comparison, index):
        """The ranking, or None while it loads (the load is started here)."""
        entry = cls._loaded.get(comparison.pk)
        if entry is not None and entry[0] == index.epoch:
            return entry[1]
        with cls._lock:
            if comparison.pk in cls._loading:
                return None
            cls._loading.add(comparison.pk)
        threading.Thread(target=cls._load_in_background, args=(comparison, index), daemon=True).start()
        return None

    @classmethod
    def load(cls, comparison, index):
        """Load the candidate's ranking here and now; return it."""
        from .versions import version_ranking

        ranking = version_ranking(comparison.candidate, index.ranking.catalogue, shopguide_settings.PRECISION)
        with cls._lock:
            cls._loaded = {comparison.pk: (index.epoch, ranking)}  # one comparison runs at a time
        return ranking

    @classmethod
    def load_or_stop(cls, comparison, index):
        """``load``, or, where this process cannot load the candidate, end the comparison with
        the reason (it would fail in every web process alike); return the ranking or None."""
        try:
            return cls.load(comparison, index)
        except Exception as exc:
            logger.exception("Version %s cannot be compared online: its ranking failed to load.", comparison.candidate)
            end(
                comparison,
                OnlineComparison.Status.STOPPED,
                f"Stopped: a web process could not load version {comparison.candidate.version}'s ranking "
                f"({type(exc).__name__}: {exc}).",
            )
            return None

    @classmethod
    def _load_in_background(cls, comparison, index):
        try:
            cls.load_or_stop(comparison, index)
        finally:
            with cls._lock:
                cls._loading.discard(comparison.pk)
            connection.close()

    @classmethod
    def reset(cls):
        if cls._loaded:  # called on every strip while no comparison runs: nothing to take then
            with cls._lock:
                cls._loaded = {}


@dataclass
class Interleaving:
    """A shopper in a running comparison, and the candidate's ranking to interleave with."""

    comparison: OnlineComparison
    shopper: object  # shoppers.Shopper
    ranking: object  # the candidate's ml.ranking.VersionRanking
    alive: set  # products that may be recommended

    def rank(self, normalized):
        """The candidate's ``Ranked`` for ``normalized``, reranked within the serving budget."""
        budget = (shopguide_settings.RERANK_BUDGET_MS or 0) / 1000
        return self.ranking.rank(normalized, keep=self.alive, rerank_budget=budget)

    def interleave(self, normalized, serving_rows, candidate_rows, limit):
        """``(rows, teams)``: the team-draft list of both versions' rows (each row as the
        version that contributed it ranked it, scored by its new place) and which version
        contributed each product."""
        keys, teams = team_draft(
            [row[0] for row in serving_rows],
            [row[0] for row in candidate_rows],
            f"{self.comparison.pk}:{self.shopper.id}:{normalized}",
            limit,
        )
        by_team = {"a": {row[0]: row for row in serving_rows}, "b": {row[0]: row for row in candidate_rows}}
        mixed = [(key, round(1.0 / (place + 1), 4), by_team[teams[key]][key][2]) for place, key in enumerate(keys)]
        return mixed, teams

    def remember(self, normalized, teams):
        """Store the list shown (``teams`` of the products shown); the first one stays."""
        InterleavedList.objects.bulk_create(
            [
                InterleavedList(
                    comparison=self.comparison,
                    session=self.shopper.id,
                    voter=self.shopper.voter,
                    query_norm=normalized,
                    teams=teams,
                )
            ],
            ignore_conflicts=True,
        )


def interleaving_for(request, index):
    """The ``Interleaving`` for the shopper of ``request`` when a comparison with ``index``'s
    version runs, the shopper is in its share and the candidate's ranking is loaded; else None."""
    comparison = running()
    if comparison is None:
        CandidateRankings.reset()  # a comparison that ended leaves no ranking in memory
        return None
    if index is None or comparison.serving_id != index.model.pk:
        return None
    if not getattr(getattr(request, "session", None), "session_key", None):
        return None  # without a session a shopper is someone new on every page
    shopper = read_token(shopper_token(request))  # the shopper the page's events will name
    if not in_share(comparison, shopper.id):
        return None
    ranking = CandidateRankings.get(comparison, index)
    return None if ranking is None else Interleaving(comparison, shopper, ranking, index.alive)


def credit_clicks(shopper, events):
    """Credit ``shopper``'s clicks in the strip (validated events of the events endpoint) to
    the versions of the interleaved lists they were shown."""
    clicks = {}
    for event in events:
        if event["event"] == "click" and event.get("placement") == "strip":
            clicks.setdefault(normalized_for_column(event["query"]), set()).add(event["product"])
    if not clicks or running() is None:
        return
    with transaction.atomic():  # two pages' clicks at once: the second waits, then adds to the first
        shown = InterleavedList.objects.select_for_update(of=("self",)).filter(
            comparison__status=OnlineComparison.Status.RUNNING, session=shopper.id, query_norm__in=list(clicks)
        )
        for shown_list in shown:
            wanted = {key for key in clicks[shown_list.query_norm] if key in shown_list.teams}
            clicked = sorted(set(shown_list.clicked) | wanted)
            if clicked != shown_list.clicked:
                shown_list.clicked, shown_list.outcome = clicked, credit(shown_list.teams, clicked)
                shown_list.save(update_fields=["clicked", "outcome"])


STANDING_SQL = """
    WITH first_lists AS (  -- each voter's first list of each query
        SELECT DISTINCT ON (voter, query_norm) voter, outcome FROM {lists}
        WHERE comparison_id = %s ORDER BY voter, query_norm, created_at, id
    )
    SELECT CASE WHEN count(*) FILTER (WHERE outcome = 'b') > count(*) FILTER (WHERE outcome = 'a') THEN 'b'
                WHEN count(*) FILTER (WHERE outcome = 'a') > count(*) FILTER (WHERE outcome = 'b') THEN 'a'
                ELSE 'tie' END
    FROM first_lists GROUP BY voter
"""


def standing(comparison):
    """The ``ml.interleaving.Comparison`` of ``comparison`` so far, one vote per voter: the
    version that won more of the voter's queries (each query's first list), else a tie."""
    with connection.cursor() as cursor:
        cursor.execute(STANDING_SQL.format(lists=InterleavedList._meta.db_table), [comparison.pk])
        return compare(vote for (vote,) in cursor.fetchall())


def describe(result):
    """A merchandiser's sentence for a ``Comparison`` of voters' votes."""
    if result.interval is None:
        return f"No decided vote yet ({result.ties} shoppers' networks were shown both, none preferring one)."
    low, high = result.interval
    return (
        f"The candidate won {result.wins} votes, lost {result.losses}, tied {result.ties} (one per network): "
        f"{result.share:.1%} of the decided votes (95% interval {low:.1%}–{high:.1%}); {result.verdict}."
    )


def decide(comparison):
    """End ``comparison`` once its verdict is significant with ``ONLINE_MIN_DECIDED`` decided
    comparisons, or once its serving version no longer serves; return whether the candidate
    should now be activated (it won, and the comparison was started to activate a winner)."""
    from .versions import active_model

    active = active_model()
    if active is None or active.pk != comparison.serving_id:
        end(comparison, OnlineComparison.Status.STOPPED, "Stopped: the version it was compared with no longer serves.")
        return False
    result = standing(comparison)
    if result.decided < shopguide_settings.ONLINE_MIN_DECIDED or not result.significant:
        return False
    won = result.verdict == "better"
    ended = end(comparison, OnlineComparison.Status.WON if won else OnlineComparison.Status.LOST, describe(result))
    return ended and won and comparison.activate_if_better


def end(comparison, status, verdict):
    """End ``comparison`` with ``status`` and ``verdict`` unless it has ended already (another
    process decided it); return whether this call ended it."""
    ended = OnlineComparison.objects.filter(pk=comparison.pk, status=OnlineComparison.Status.RUNNING).update(
        status=status, verdict=verdict, ended_at=timezone.now()
    )
    comparison.refresh_from_db()
    forget()
    return bool(ended)
