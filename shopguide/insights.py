"""Search insights for merchandisers: what shoppers searched, what the shop's search and
shopguide's strip showed them, and what they did with it, by day, query and serving version.

Two daily tables keep the page fast on a busy shop, whatever the number of events:

- ``DailySearches`` is counted as things happen: the shop's search view calls
  ``services.record_search`` (searches, searches with no results) and each strip rendered by
  the template tags counts itself (strips, empty strips). One upsert per search, after the
  response has been sent.
- ``DailyEvents`` is summed from ``SearchEvent`` a day at a time (``roll_up``), when the page
  asks for a day that has not been summed since it ended (today's at most
  ``FRESH_FOR`` old), or by the Celery task ``shopguide.roll_up_insights``. Each shopper
  (session) counts once per query and product, so replaying events moves nothing.

Events are what shoppers' browsers report (see ``api.EventsView``): the figures are as
trustworthy as that, and no more.
"""

import datetime
from dataclasses import dataclass, field

from django.db import connection, transaction
from django.db.models import F, Q, Sum
from django.utils import timezone

from .models import DailyEvents, DailySearches, RolledUpDay, SearchEvent, normalized_for_column

FRESH_FOR = datetime.timedelta(minutes=5)  # how old today's sums may be when the page is shown
MIN_VIEWS = 5  # strip views a query needs before its click-through is ranked among the worst
LOCK_NAMESPACE = 0x5347  # pg_advisory_xact_lock(namespace, day): one roll-up of a day at a time


def count_search(query, results):
    """Count a search for ``query`` that the shop's search answered with ``results`` products."""
    _count(query, searches=1, no_results=int(not results))


def count_strip(query, matched):
    """Count a strip rendered for ``query``; ``matched``: whether anything matched the query
    (else the shop's popular products, or nothing, filled it)."""
    _count(query, strips=1, unmatched_strips=int(not matched))


def _count(query, **counts):
    normalized = normalized_for_column(str(query))
    if not normalized:
        return
    columns = ["searches", "no_results", "strips", "unmatched_strips"]
    values = [counts.get(column, 0) for column in columns]
    table = DailySearches._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (day, query_norm, {', '.join(columns)}) VALUES (%s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (day, query_norm) DO UPDATE SET "
            + ", ".join(f"{column} = {table}.{column} + EXCLUDED.{column}" for column in columns),
            [timezone.localdate(), normalized, *values],
        )


def day_bounds(day):
    """The moments a local day starts and ends, in the current time zone."""
    start = timezone.make_aware(datetime.datetime.combine(day, datetime.time.min))
    return start, timezone.make_aware(datetime.datetime.combine(day + datetime.timedelta(days=1), datetime.time.min))


ROLL_UP_SQL = """
    WITH shown AS (  -- each shopper's distinct (query, product, event, list) of the day
        SELECT query_norm, session, product_key, event, placement,
               min(position) AS position, max(model_version) AS model_version
        FROM {events} WHERE created_at >= %(start)s AND created_at < %(end)s
        GROUP BY 1, 2, 3, 4, 5
    ), per_shopper AS (
        SELECT query_norm, session,
               max(model_version) FILTER (WHERE placement = 'strip') AS model_version,
               bool_or(placement = 'strip' AND event = 'impression') AS viewed,
               count(*) FILTER (WHERE placement = 'strip' AND event = 'click') AS clicks,
               count(position) FILTER (WHERE placement = 'strip' AND event = 'click') AS positioned_clicks,
               coalesce(sum(position) FILTER (WHERE placement = 'strip' AND event = 'click'), 0) AS click_positions,
               count(*) FILTER (WHERE event = 'add_to_cart') AS carts,
               count(*) FILTER (WHERE event = 'purchase') AS purchases
        FROM shown GROUP BY 1, 2
    )
    INSERT INTO {daily} (day, query_norm, model_version, views, clicked_views, clicks, positioned_clicks,
                         click_positions, carts, purchases)
    SELECT %(day)s, query_norm, model_version, count(*) FILTER (WHERE viewed),
           count(*) FILTER (WHERE viewed AND clicks > 0), sum(clicks), sum(positioned_clicks),
           sum(click_positions), sum(carts), sum(purchases)
    FROM per_shopper GROUP BY 2, 3
"""


def roll_up(day):
    """Sum ``day``'s events into ``DailyEvents`` (replacing an earlier sum of that day)."""
    start, end = day_bounds(day)
    sql = ROLL_UP_SQL.format(events=SearchEvent._meta.db_table, daily=DailyEvents._meta.db_table)
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [LOCK_NAMESPACE, day.toordinal()])
        now = timezone.now()  # after the lock: a sum that waited counts from when it began
        DailyEvents.objects.filter(day=day).delete()
        cursor.execute(sql, {"start": start, "end": end, "day": day})
        RolledUpDay.objects.update_or_create(day=day, defaults={"rolled_up_at": now})


def stale_days(first, last):
    """The days of ``first..last`` (up to today) whose events need summing."""
    today = timezone.localdate()
    days = [first + datetime.timedelta(days=n) for n in range((min(last, today) - first).days + 1)]
    done = dict(RolledUpDay.objects.filter(day__range=(first, last)).values_list("day", "rolled_up_at"))
    now = timezone.now()

    def fresh(day):
        moment = done.get(day)
        # A day is final once summed FRESH_FOR after its end: events of its last moments may
        # still have been committing when it ended.
        return moment is not None and (moment >= day_bounds(day)[1] + FRESH_FOR or now - moment < FRESH_FOR)

    return [day for day in days if not fresh(day)]


def roll_up_period(first, last):
    """Sum the stale days of ``first..last``; return how many were summed."""
    days = stale_days(first, last)
    for day in days:
        roll_up(day)
    return len(days)


def forget_sums(moments=None):
    """Make the days of ``moments`` (all days, when None) be summed again: for events added
    to days already summed (an import)."""
    days = RolledUpDay.objects.all()
    if moments is not None:
        days = days.filter(day__in={timezone.localdate(moment) for moment in moments})
    days.delete()


def ratio(part, whole):
    return part / whole if whole else None


@dataclass
class Figures:
    """Sums over a period (or a query, a day, a version) and the rates made of them."""

    searches: int = 0
    no_results: int = 0
    strips: int = 0
    unmatched_strips: int = 0
    views: int = 0
    clicked_views: int = 0
    clicks: int = 0
    positioned_clicks: int = 0
    click_positions: int = 0
    carts: int = 0
    purchases: int = 0

    @property
    def no_result_rate(self):
        return ratio(self.no_results, self.searches)

    @property
    def unmatched_strip_rate(self):
        return ratio(self.unmatched_strips, self.strips)

    @property
    def click_through(self):
        """The share of shoppers shown the strip for a query who clicked in it."""
        return ratio(self.clicked_views, self.views)

    @property
    def mean_click_position(self):
        return ratio(self.click_positions, self.positioned_clicks)

    def add(self, sums):
        """Add ``sums`` (``{"sum_views": 3, ...}``, as ``SEARCH_SUMS`` and ``EVENT_SUMS`` name them)."""
        for name, value in sums.items():
            name = name.removeprefix("sum_")
            if value is not None:
                setattr(self, name, getattr(self, name) + value)
        return self


@dataclass
class QueryFigures(Figures):
    query: str = ""


@dataclass
class VersionFigures(Figures):
    version: int | None = None


@dataclass
class Insights:
    first: datetime.date
    last: datetime.date
    totals: Figures
    distinct_queries: int
    days: list = field(default_factory=list)  # (day, Figures) for every day of the period
    versions: list = field(default_factory=list)  # VersionFigures, newest version first, None last
    top_queries: list = field(default_factory=list)  # QueryFigures, most searched first
    no_result_queries: list = field(default_factory=list)
    unclicked_queries: list = field(default_factory=list)  # shown the strip, never clicked
    worst_click_through: list = field(default_factory=list)
    summed_until: datetime.datetime | None = None


SEARCH_SUMS = {f"sum_{name}": Sum(name) for name in ("searches", "no_results", "strips", "unmatched_strips")}
EVENT_SUMS = {
    f"sum_{name}": Sum(name)
    for name in ("views", "clicked_views", "clicks", "positioned_clicks", "click_positions", "carts", "purchases")
}
SUMS = {DailySearches: SEARCH_SUMS, DailyEvents: EVENT_SUMS}  # each daily table and what is summed of it


def query_figures(first, last, queries):
    """``{query: QueryFigures}`` for ``queries`` over ``first..last``, both tables summed."""
    figures = {query: QueryFigures(query=query) for query in queries}
    period = Q(day__range=(first, last), query_norm__in=list(figures))
    for model, sums in SUMS.items():
        for row in model.objects.filter(period).values("query_norm").annotate(**sums).order_by():
            figures[row.pop("query_norm")].add(row)
    return figures


def insights(first, last, rows=20):
    """The figures of ``first..last`` (local days, both included), the events summed first
    where they are not yet. ``rows``: the length of each list of queries."""
    roll_up_period(first, last)
    searches = DailySearches.objects.filter(day__range=(first, last))
    events = DailyEvents.objects.filter(day__range=(first, last))
    totals = Figures().add(searches.aggregate(**SEARCH_SUMS)).add(events.aggregate(**EVENT_SUMS))
    distinct_queries = searches.filter(searches__gt=0).values("query_norm").distinct().count()

    by_day = {first + datetime.timedelta(days=n): Figures() for n in range((last - first).days + 1)}
    for model, sums in SUMS.items():
        for row in model.objects.filter(day__range=(first, last)).values("day").annotate(**sums).order_by():
            by_day[row.pop("day")].add(row)
    versions = [
        VersionFigures(version=row.pop("model_version")).add(row)
        for row in events.values("model_version")
        .annotate(**EVENT_SUMS)
        .order_by(F("model_version").desc(nulls_last=True))
    ]

    def ranked(model, order, having):
        rows_ = model.objects.filter(day__range=(first, last))
        if model is DailyEvents:  # queries the shop searched or showed a strip for, not any text an event names
            rows_ = rows_.filter(query_norm__in=searches.values("query_norm"))
        grouped = rows_.values("query_norm").annotate(**SUMS[model]).filter(having)
        queries = [row["query_norm"] for row in grouped.order_by(*order, "query_norm")[:rows]]
        figures = query_figures(first, last, queries)
        return [figures[query] for query in queries]

    worst_order = (F("sum_clicked_views") * 1.0 / F("sum_views")).asc()
    return Insights(
        first=first,
        last=last,
        totals=totals,
        distinct_queries=distinct_queries,
        days=sorted(by_day.items()),
        versions=versions,
        top_queries=ranked(DailySearches, ["-sum_searches"], having=Q(sum_searches__gt=0)),
        no_result_queries=ranked(DailySearches, ["-sum_no_results"], having=Q(sum_no_results__gt=0)),
        unclicked_queries=ranked(DailyEvents, ["-sum_views"], having=Q(sum_views__gt=0, sum_clicked_views=0)),
        worst_click_through=ranked(DailyEvents, [worst_order, "-sum_views"], having=Q(sum_views__gte=MIN_VIEWS)),
        summed_until=RolledUpDay.objects.filter(day=min(last, timezone.localdate()))
        .values_list("rolled_up_at", flat=True)
        .first(),
    )
