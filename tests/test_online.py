"""Online comparison: a share of shoppers see the serving version and a candidate interleaved in
the strip, their clicks credit the version that ranked the product, one outcome per voter and
query counts, and a candidate that wins significantly is activated when asked to be. Real
PostgreSQL, two versions really trained on the slang shop."""

import re

import pytest
from django.core.cache import cache, caches
from django.test import Client

from shopguide import online, operations
from shopguide.ml.interleaving import team_draft
from shopguide.models import InterleavedList, OnlineComparison, RecommenderModel
from shopguide.services import recommend
from shopguide.serving import ServingIndex
from shopguide.versions import active_model
from tests.conftest import needs_torch, train, trained_slang_shop
from tests.slang_shop import SLANG

pytestmark = pytest.mark.serving

EVENTS = "/api/shopguide/events/"


@pytest.fixture(scope="module")
def shop(django_db_blocker, tmp_path_factory):
    """The slang shop serving version 1, and a candidate trained on fewer of its words, not serving."""
    for products in trained_slang_shop(django_db_blocker, tmp_path_factory):
        with django_db_blocker.unblock():
            train("--epochs", "1", "--no-reranker", "--holdout", "0.5")  # other pairs: another model
        yield products


@pytest.fixture
def products(shop, db, settings):
    settings.SHOPGUIDE = {**settings.SHOPGUIDE, "ONLINE_SHARE": 1.0, "EVENTS_RATE": None}
    ServingIndex.reset()
    online.CandidateRankings.reset()
    online.forget()
    cache.clear()
    caches["throttle"].clear()
    return shop


def candidate():
    return RecommenderModel.objects.exclude(is_active=True).get()


def compared():
    """A comparison of the candidate with the serving version, its ranking loaded here."""
    comparison = operations.compare_online(candidate())
    online.CandidateRankings.load(comparison, ServingIndex.get(wait=True))
    return comparison


def strip_of(client, word):
    """The strip's product ids and the page's shopper token, from the demo's search page."""
    page = client.get("/search/", {"q": word}).content.decode()
    strip = page[page.index('class="shopguide-strip"') :]
    token = re.search(r'data-shopguide-token="([^"]+)"', strip).group(1)
    return re.findall(r'data-shopguide-product="([^"]+)"', strip), token


def click(client, token, word, product_id):
    body = {"query": word, "product": product_id, "event": "click", "placement": "strip", "position": 1}
    response = client.post(EVENTS, body, content_type="application/json", HTTP_X_SHOPGUIDE_TOKEN=token)
    assert response.status_code == 201, response.content


def test_a_shopper_in_the_share_sees_both_versions_interleaved_and_clicks_credit_the_one_that_ranked(products):
    comparison = compared()
    index = ServingIndex.get()
    candidate_ranking = online.CandidateRankings.get(comparison, index)
    rankings = {
        word: ([item.key for item in recommend(word, limit=50)], candidate_ranking.rank(word, keep=index.alive).keys)
        for word in sorted(SLANG)
    }
    word = next(word for word, (serving, candidate) in rankings.items() if serving != candidate)
    serving_keys, candidate_keys = rankings[word]  # two versions that rank this word differently
    shopper = Client()
    shopper.session.save()  # a shopper with a session: their pages name them by it (without, each page anew)
    shown, token = strip_of(shopper, word)
    shown_list = InterleavedList.objects.get(query_norm=word)
    assert shown_list.query_norm == word and shown_list.comparison == comparison
    # The strip is the team draft of both versions' rankings, seeded by comparison, shopper and query.
    by_key = {str(product.pk): product.external_id for product in products.values()}
    expected, teams = team_draft(serving_keys, candidate_keys, f"{comparison.pk}:{shown_list.session}:{word}", 60)
    assert shown == [by_key[key] for key in expected][: len(shown)]
    assert shown_list.teams == {key: teams[key] for key in expected[: len(shown)]}
    assert set(shown_list.teams.values()) == {"a", "b"}  # both versions are on show
    assert strip_of(shopper, word)[0] == shown  # the same list again
    assert InterleavedList.objects.filter(query_norm=word).count() == 1

    from_b = next(key for key in expected if teams[key] == "b")
    from_a = next(key for key in expected if teams[key] == "a")
    click(shopper, token, word, by_key[from_b])
    shown_list.refresh_from_db()
    assert (shown_list.clicked, shown_list.outcome) == ([from_b], "b")
    click(shopper, token, word, by_key[from_a])
    shown_list.refresh_from_db()
    assert shown_list.outcome == "tie"
    other = Client()
    other.session.save()
    other_token = strip_of(other, word)[1]
    click(other, other_token, word, by_key[from_a])  # another shopper's click is theirs alone
    shown_list.refresh_from_db()
    assert sorted(shown_list.clicked) == sorted([from_a, from_b]) and shown_list.outcome == "tie"
    assert InterleavedList.objects.filter(query_norm=word).count() == 2
    assert online.standing(comparison) == online.compare(["tie"])  # both shoppers on one network: one outcome


def test_shoppers_outside_the_share_or_after_the_comparison_see_the_serving_list(products, settings):
    word = next(iter(SLANG))
    serving_ids = [item.public_id for item in recommend(word, limit=8)]  # the strip of a search with no results
    comparison = compared()
    settings.SHOPGUIDE = {**settings.SHOPGUIDE, "ONLINE_SHARE": 0.0}
    assert strip_of(Client(), word)[0] == serving_ids
    settings.SHOPGUIDE = {**settings.SHOPGUIDE, "ONLINE_SHARE": 1.0}
    operations.stop_comparison()
    assert strip_of(Client(), word)[0] == serving_ids
    assert not InterleavedList.objects.exists()
    comparison.refresh_from_db()
    assert comparison.status == "stopped" and comparison.ended_at is not None


def seed_outcomes(comparison, outcomes, repeats=1):
    """``outcomes``: one per voter ("b" a win of the candidate); each voter shown ``repeats``
    lists for the same query, the later ones won by the other side."""
    rows = []
    for voter, outcome in enumerate(outcomes):
        for repeat in range(repeats):
            later = {"a": "b", "b": "a", "tie": "a"}[outcome] if repeat else outcome
            rows.append(
                InterleavedList(comparison=comparison, session=f"s{voter}-{repeat}", voter=f"v{voter}",
                                query_norm="drill", teams={}, outcome=later)
            )  # fmt: skip
    InterleavedList.objects.bulk_create(rows)


def test_each_network_has_one_vote_its_majority_over_the_first_list_of_each_query(products):
    comparison = operations.compare_online(candidate())
    seed_outcomes(comparison, ["b"] * 6 + ["a"] * 3 + ["tie"] * 2, repeats=4)
    result = online.standing(comparison)
    assert (result.wins, result.losses, result.ties) == (6, 3, 2)
    assert not result.significant
    # One network that searches 200 queries and clicks the candidate's products in each: one vote.
    InterleavedList.objects.bulk_create(
        InterleavedList(comparison=comparison, session="x", voter="one-network", query_norm=f"q{n}", teams={},
                        outcome="b")
        for n in range(200)
    )  # fmt: skip
    InterleavedList.objects.bulk_create(
        InterleavedList(comparison=comparison, session="y", voter="split", query_norm=f"q{n}", teams={}, outcome=side)
        for n, side in enumerate(["a", "b", "b", "tie"])
    )
    assert online.standing(comparison) == online.compare(["b"] * 8 + ["a"] * 3 + ["tie"] * 2)


@needs_torch  # the winner is rescored in, here in this process (a worker's job)
def test_a_candidate_that_wins_is_activated_once_the_verdict_holds(products, settings, eager_celery):
    settings.SHOPGUIDE = {**settings.SHOPGUIDE, "ONLINE_MIN_DECIDED": 100}
    serving, new = active_model(), candidate()
    assert operations.after_training(new, "online") is False  # compared, not activated
    comparison = OnlineComparison.objects.get(status="running")
    assert comparison.candidate == new and comparison.serving == serving and comparison.activate_if_better
    assert "Compared online with version 1" in RecommenderModel.objects.get(pk=new.pk).activation

    seed_outcomes(comparison, ["b"] * 60 + ["a"] * 30)  # significant, but 90 decided is too few
    assert operations.decide_comparison().status == "running" and active_model() == serving
    InterleavedList.objects.bulk_create(
        InterleavedList(comparison=comparison, session=f"t{n}", voter=f"w{n}", query_norm="drill", teams={},
                        outcome="b" if n % 3 else "a")
        for n in range(30)
    )  # fmt: skip
    assert operations.decide_comparison().status == "won"
    comparison.refresh_from_db()
    assert comparison.verdict.startswith("The candidate won 80 votes, lost 40, tied 0 (one per network): 66.7%")
    assert active_model() == new  # rescored in (eager tasks) and serving
    operations.activate(serving)  # leave the module's shop as it was


def test_a_losing_candidate_is_not_activated_and_a_comparison_ends_when_its_version_stops_serving(products, settings):
    settings.SHOPGUIDE = {**settings.SHOPGUIDE, "ONLINE_MIN_DECIDED": 10}
    serving = active_model()
    comparison = operations.compare_online(candidate(), activate_if_better=True)
    seed_outcomes(comparison, ["a"] * 20 + ["b"] * 2)
    assert operations.decide_comparison().status == "lost" and active_model() == serving

    comparison = operations.compare_online(candidate(), activate_if_better=True)
    RecommenderModel.objects.filter(pk=serving.pk).update(is_active=False)
    assert operations.decide_comparison().status == "stopped"
    RecommenderModel.objects.filter(pk=serving.pk).update(is_active=True)


def test_comparing_needs_a_serving_version_and_another_one(products):
    with pytest.raises(operations.OperationError, match="is the one serving"):
        operations.compare_online(active_model())
    first = operations.compare_online(candidate())
    second = operations.compare_online(candidate())  # a new comparison ends the running one
    first.refresh_from_db()
    assert first.status == "stopped" and second.status == "running"


def test_staff_start_follow_and_stop_a_comparison_in_the_admin(products, staff_client):
    new = candidate()
    changelist = "/admin/shopguide/recommendermodel/"
    response = staff_client.post(changelist, {"action": "compare_online", "_selected_action": [new.pk]}, follow=True)
    assert "is compared with version 1 on 100% of shoppers" in response.content.decode()
    comparison = OnlineComparison.objects.get(status="running")
    seed_outcomes(comparison, ["b"] * 3 + ["a"])
    page = staff_client.get(f"{changelist}{new.pk}/change/").content.decode()
    assert "<td>v1</td><td>3</td><td>1</td><td>0</td><td>75.0%</td>" in page
    assert "no significant difference" in page

    stranger = Client().post(changelist, {"action": "stop_comparison", "_selected_action": [new.pk]})
    assert stranger.status_code == 302
    assert OnlineComparison.objects.get().status == "running"  # a stranger is sent to the login page
    staff_client.post(changelist, {"action": "stop_comparison", "_selected_action": [new.pk]})
    assert OnlineComparison.objects.get().status == "stopped"


def test_a_pinned_product_is_credited_to_neither_version_and_a_shopper_without_a_session_is_not_compared(products):
    from shopguide.models import QueryRule, RuleProduct

    comparison = compared()
    word = sorted(SLANG)[0]
    pinned = products[SLANG[sorted(SLANG)[1]]]
    rule = QueryRule.objects.create(query=word)
    RuleProduct.objects.create(rule=rule, product_key=str(pinned.pk), action="pin", position=1)
    online.forget()
    from shopguide.rules import forget as forget_rules

    forget_rules()
    shopper = Client()
    shopper.session.save()
    shown, _ = strip_of(shopper, word)
    assert shown[0] == pinned.external_id
    shown_list = InterleavedList.objects.get(comparison=comparison)
    assert str(pinned.pk) not in shown_list.teams and len(shown_list.teams) == len(shown) - 1

    strip_of(Client(), word)  # no session: the serving list, nothing stored
    assert InterleavedList.objects.count() == 1


def test_a_candidate_that_a_web_process_cannot_load_ends_its_comparison_with_the_reason(products, monkeypatch):
    import shopguide.versions

    comparison = operations.compare_online(candidate())

    def fails(*args, **kwargs):
        raise ImportError("No module named 'torch'")

    monkeypatch.setattr(shopguide.versions, "version_ranking", fails)
    assert online.CandidateRankings.load_or_stop(comparison, ServingIndex.get(wait=True)) is None
    comparison.refresh_from_db()
    assert comparison.status == "stopped" and "could not load version 2's ranking" in comparison.verdict
    assert "No module named 'torch'" in comparison.verdict
    assert online.running() is None


def test_a_decided_comparison_is_not_ended_again(products):
    comparison = operations.compare_online(candidate())
    assert online.end(comparison, OnlineComparison.Status.WON, "won fair and square")
    assert not online.end(comparison, OnlineComparison.Status.STOPPED, "Stopped by staff.")
    comparison.refresh_from_db()
    assert (comparison.status, comparison.verdict) == ("won", "won fair and square")
