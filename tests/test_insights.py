"""Search insights: exact figures on a seeded set of searches and events, what is counted and
how, freshness of the daily sums, and the admin page. Real PostgreSQL."""

import datetime

import pytest
from django.contrib.auth.models import Permission
from django.core.cache import caches
from django.test import Client
from django.utils import timezone

from catalog.models import Product
from shopguide import insights
from shopguide.importing import import_events
from shopguide.insights import count_search, count_strip, day_bounds
from shopguide.models import DailySearches, RecommenderModel, RolledUpDay, SearchEvent
from tests.conftest import shopper_headers

pytestmark = pytest.mark.serving

TODAY = timezone.localdate()
YESTERDAY = TODAY - datetime.timedelta(days=1)
INSIGHTS = "/admin/shopguide/searchevent/insights/"


def at(day, hour=12):
    return day_bounds(day)[0] + datetime.timedelta(hours=hour)


def event(day, session, query, product, kind, placement="strip", position=None, version=None):
    return SearchEvent(
        query=query,
        query_norm=query,
        product_key=product,
        event=kind,
        placement=placement,
        position=position,
        model_version=version,
        session=session,
        voter=session,
        created_at=at(day, hour=0 if day == TODAY else 12),  # today's noon may be ahead of now
    )


@pytest.fixture
def seeded(db):
    """Yesterday and today: searches, strips and events, as described in each line."""
    drill = "cordless drill"
    SearchEvent.objects.bulk_create(
        [
            # s1 saw version 3's strip, clicked B (twice: a replay), put it in a cart and bought it.
            event(YESTERDAY, "s1", drill, "A", "impression", position=1, version=3),
            event(YESTERDAY, "s1", drill, "B", "impression", position=2, version=3),
            event(YESTERDAY, "s1", drill, "B", "click", position=2, version=3),
            event(YESTERDAY, "s1", drill, "B", "click", position=2, version=3),
            event(YESTERDAY, "s1", drill, "B", "add_to_cart", placement=""),
            event(YESTERDAY, "s1", drill, "B", "purchase", placement=""),
            # s2 saw it and clicked nothing; s3 saw version 2's and clicked A (1st) and B (no place).
            event(YESTERDAY, "s2", drill, "A", "impression", position=1, version=3),
            event(YESTERDAY, "s3", drill, "A", "impression", position=1, version=2),
            event(YESTERDAY, "s3", drill, "A", "click", position=1, version=2),
            event(YESTERDAY, "s3", drill, "B", "click", version=2),
            # s4 used the shop's own results only: no strip view.
            event(YESTERDAY, "s4", drill, "A", "impression", placement="results", position=1),
            event(YESTERDAY, "s4", drill, "A", "click", placement="results", position=1),
            # Today: s1 again, a click at the first place; s5 saw the strip for "hose" only.
            event(TODAY, "s1", drill, "A", "impression", position=1, version=3),
            event(TODAY, "s1", drill, "A", "click", position=1, version=3),
            event(TODAY, "s5", "hose", "H", "impression", position=1, version=3),
            # Before the period: not counted.
            event(TODAY - datetime.timedelta(days=3), "s6", drill, "A", "click", position=1, version=3),
        ]
    )
    DailySearches.objects.create(day=YESTERDAY, query_norm=drill, searches=4)
    DailySearches.objects.create(day=YESTERDAY, query_norm="garden gnome", searches=1, no_results=1)
    for _ in range(3):
        count_search("Cordless  DRILL", 12)
    count_search("hose", 5)
    count_search("xyzzy", 0)
    count_search("xyzzy", 0)
    count_search("   ", 0)  # no query: nothing to count
    count_strip(drill, 8)
    count_strip(drill, 8)
    count_strip("xyzzy", 0)


def test_the_figures_of_a_period_are_exact(seeded, monkeypatch):
    monkeypatch.setattr(insights, "MIN_VIEWS", 1)
    report = insights.insights(YESTERDAY, TODAY)
    totals = report.totals
    assert (totals.searches, totals.no_results, report.distinct_queries) == (11, 3, 4)
    assert (totals.strips, totals.unmatched_strips) == (3, 1)
    assert (totals.views, totals.clicked_views, totals.clicks) == (5, 3, 4)
    assert totals.click_through == pytest.approx(0.6)
    assert totals.mean_click_position == pytest.approx(4 / 3)  # places 2, 1 and 1; one click had none
    assert (totals.carts, totals.purchases) == (1, 1)

    versions = {row.version: row for row in report.versions}
    assert [row.version for row in report.versions] == [3, 2, None]
    assert (versions[3].views, versions[3].clicked_views, versions[3].mean_click_position) == (4, 2, 1.5)
    assert (versions[3].carts, versions[3].purchases) == (1, 1)
    assert (versions[2].views, versions[2].click_through, versions[2].clicks) == (1, 1.0, 2)
    assert (versions[None].views, versions[None].click_through) == (0, None)

    assert [row.query for row in report.top_queries] == ["cordless drill", "xyzzy", "garden gnome", "hose"]
    drill = report.top_queries[0]
    assert (drill.searches, drill.no_result_rate, drill.views, drill.clicked_views) == (7, 0.0, 4, 3)
    assert drill.mean_click_position == pytest.approx(4 / 3)
    assert [(row.query, row.no_results) for row in report.no_result_queries] == [("xyzzy", 2), ("garden gnome", 1)]
    assert [row.query for row in report.unclicked_queries] == ["hose"]
    assert [(row.query, row.click_through) for row in report.worst_click_through] == [
        ("hose", 0.0),
        ("cordless drill", 0.75),
    ]
    assert [(day, figures.searches, figures.views, figures.clicked_views) for day, figures in report.days] == [
        (YESTERDAY, 5, 3, 2),
        (TODAY, 6, 2, 1),
    ]
    only_today = insights.insights(TODAY, TODAY)
    assert (only_today.totals.searches, only_today.totals.views, only_today.distinct_queries) == (6, 2, 3)


def test_a_summed_day_is_summed_again_only_when_it_may_have_changed(seeded):
    assert insights.roll_up_period(YESTERDAY, TODAY) == 2
    assert insights.roll_up_period(YESTERDAY, TODAY) == 0  # both fresh: yesterday's ended before its sum
    late = [event(YESTERDAY, "s7", "hose", "H", "impression", position=1, version=3)]
    SearchEvent.objects.bulk_create(late + [event(TODAY, "s8", "hose", "H", "impression", position=1, version=3)])
    assert insights.insights(YESTERDAY, TODAY).totals.views == 5  # today's sum is under FRESH_FOR old

    RolledUpDay.objects.filter(day=TODAY).update(rolled_up_at=timezone.now() - insights.FRESH_FOR)
    assert insights.insights(YESTERDAY, TODAY).totals.views == 6
    insights.forget_sums([at(YESTERDAY)])  # what an import of yesterday's events does
    assert insights.insights(YESTERDAY, TODAY).totals.views == 7
    assert insights.stale_days(YESTERDAY, TODAY + datetime.timedelta(days=5)) == []  # no future days


def test_importing_events_makes_their_days_be_summed_again(seeded, tmp_path):
    Product.objects.create(external_id="P1", title="Garden hose")
    assert insights.insights(YESTERDAY, TODAY).totals.carts == 1
    path = tmp_path / "events.csv"
    path.write_text(f"query,product_id,event,session,timestamp\ndrill,P1,add_to_cart,x9,{at(YESTERDAY).isoformat()}\n")
    assert import_events(path).stored == 1
    assert insights.insights(YESTERDAY, TODAY).totals.carts == 2


@pytest.fixture
def products(db):
    return [
        Product.objects.create(external_id=f"p{i}", title=title)
        for i, title in enumerate(["Garden hose, 50 ft", "Cordless drill", "Desk lamp"])
    ]


def test_events_say_which_list_which_place_and_which_version(products):
    caches["throttle"].clear()
    RecommenderModel.objects.create(version=4, base_model="m", artifact_path="v4", checksum="x")
    shown = {"query": "drill", "product": "p1", "event": "click", "placement": "strip", "position": 2, "version": 4}
    in_results = {"query": "drill", "product": "p1", "event": "impression", "placement": "results", "position": 7}
    bare = {"query": "drill", "product": "p1", "event": "impression"}  # as an older page's script sends
    response = post_events([shown, in_results, bare])
    assert response.status_code == 201, response.content
    stored = SearchEvent.objects.order_by("placement")
    assert [(e.placement, e.position, e.model_version) for e in stored] == [
        ("", None, None),
        ("results", 7, None),
        ("strip", 2, 4),
    ]
    for bad, field in (
        ({"placement": "banner"}, "placement"),
        ({"position": 0}, "position"),
        ({"position": 32768}, "position"),
        ({"position": "first"}, "position"),
        ({"version": 99}, "version"),  # no such version
        ({"version": -1}, "version"),
        ({"version": 10**30}, "version"),
        ({"position": 10**30}, "position"),
        ({"version": True}, "version"),
        ({"position": 2.5}, "position"),
        ({"version": None}, "version"),
    ):
        response = post_events([shown, shown | bad])
        assert response.status_code == 400, (bad, response.content)
        assert list(response.json()["error"]["fields"]) == [f"1.{field}"], response.json()
    assert SearchEvent.objects.count() == 3  # nothing of a refused request is stored


def post_events(events):
    return Client().post("/api/shopguide/events/", events, content_type="application/json", **shopper_headers())


def test_the_shops_searches_and_strips_are_counted(products):
    client = Client()
    for query in ("Garden hose", "garden  HOSE", "unicorn saddle"):
        assert client.get("/search/", {"q": query}).status_code == 200
    assert client.get("/search/", {"q": "garden hose", "page": "2"}).status_code == 200  # the same search
    assert client.get(f"/product/{products[0].pk}/", {"q": "drill"}).status_code == 200
    counted = {
        row.query_norm: (row.searches, row.no_results, row.strips, row.unmatched_strips)
        for row in DailySearches.objects.filter(day=TODAY)
    }
    # Every page showed the strip; for "unicorn saddle" nothing matched, and popular products stood in.
    assert counted == {"garden hose": (2, 0, 3, 0), "unicorn saddle": (1, 1, 1, 1), "drill": (0, 0, 1, 0)}


def test_the_insights_page_shows_the_period_to_staff_with_view_permission(seeded, staff_client, django_user_model):
    response = staff_client.get(INSIGHTS, {"start": YESTERDAY.isoformat(), "end": TODAY.isoformat()})
    assert response.status_code == 200
    page = response.content.decode()
    assert '<div id="insights-searches"><dt>searches</dt><dd>11</dd>' in page
    assert '<div id="insights-click-through"><dt>strip click-through</dt><dd>60.0%</dd>' in page
    assert "<th>v3</th><td>4</td><td>50.0%</td><td>1.50</td>" in page
    assert "<th>cordless drill</th><td>7</td><td>0.0%</td><td>4</td><td>75.0%</td><td>1.33</td>" in page
    assert response.context["insights"].first == YESTERDAY
    assert staff_client.get(INSIGHTS).context["insights"].last == TODAY  # the last 30 days by default

    for start, end, message in (
        (TODAY, YESTERDAY, "The period ends before it starts."),
        (TODAY - datetime.timedelta(days=400), TODAY, "Choose a period of a year at most."),
        ("yesterday", TODAY, "Enter a valid date."),
    ):
        response = staff_client.get(INSIGHTS, {"start": str(start), "end": str(end)})
        assert response.status_code == 200 and response.context["insights"] is None
        assert message in response.content.decode()

    clerk = django_user_model.objects.create_user("clerk", password="pw", is_staff=True)
    other = Client()
    other.force_login(clerk)
    assert other.get(INSIGHTS).status_code == 403
    clerk.user_permissions.add(Permission.objects.get(codename="view_searchevent"))
    assert other.get(INSIGHTS).status_code == 200
    assert Client().get(INSIGHTS).status_code == 302  # to the login page
    assert staff_client.get("/admin/shopguide/searchevent/").content.decode().count(INSIGHTS) == 1


def test_the_lists_of_queries_name_only_what_the_shop_searched_or_showed(seeded, monkeypatch):
    monkeypatch.setattr(insights, "MIN_VIEWS", 1)
    SearchEvent.objects.bulk_create(
        [event(YESTERDAY, f"x{n}", "buy cheap pills here", "A", "impression", position=1) for n in range(20)]
    )  # a stranger's made-up query: counted in the totals, named in no list
    report = insights.insights(YESTERDAY, TODAY)
    assert report.totals.views == 25
    named = report.top_queries + report.unclicked_queries + report.worst_click_through
    assert "buy cheap pills here" not in {row.query for row in named}


def test_a_strip_that_cannot_be_counted_still_shows(products, monkeypatch, caplog):
    from django.template import Context, Template

    def fails(query, matched):
        raise RuntimeError("no insights table yet")

    monkeypatch.setattr("shopguide.templatetags.shopguide.count_strip", fails)
    html = Template("{% load shopguide %}{% shopguide_recommendations 'garden hose' %}").render(Context({}))
    assert "Garden hose, 50 ft" in html and "was not counted" in caplog.text
