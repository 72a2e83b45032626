"""The search insights page over a busy month: 1,000,000 shopper events on the demo shop.

    .venv/bin/python bench/insights.py [--events 1000000] [--days 30] [--rounds 10]

Builds (once; ``--rebuild`` to start again) a database ``shopguide_bench_insights`` on
DATABASE_URL's server, or the embedded one the demo uses, with the demo catalogue and
``--events`` events over the last ``--days`` days: Zipf-distributed queries (the demo's
judged queries and variants of them), shoppers who see a strip of 8 and the shop's results,
click lower places less often, and now and then put a product in a cart or buy it; searches
per query and day to match. Then, as staff through Django's test client (the whole admin
view and its template, DEBUG off), it times the insights page for the whole period: once
"cold", every day's events summed first, then ``--rounds`` times with the sums in place (the
page as a merchandiser meets it; today's sums are made fresh before each of these). The
baseline, measured in the same run: one ``count(*)`` over the events table (a full scan).
Writes ``bench/results/insights.{json,md}`` and refreshes bench/README.md's table.
"""

import argparse
import datetime
import io
import os
import random
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from publishing import publish  # noqa: E402
from trained_shop import database_url  # noqa: E402

DEMO_DATA = ROOT / "catalog" / "demo_data"
STRIP = 8
CLICK_AT_FIRST = 0.35  # a shopper's chance of clicking the first place; lower places less


def setup(args):
    os.environ.update(
        DATABASE_URL=args.database_url or database_url("shopguide_bench_insights"),
        DJANGO_SETTINGS_MODULE="config.settings",
        DEBUG="0",
        SECRET_KEY="benchmark",
        ALLOWED_HOSTS="testserver",
    )
    import django

    django.setup()


def ensure_database(url):
    import psycopg

    base, _, options = url.partition("?")
    server, name = base.rsplit("/", 1)
    with psycopg.connect(f"{server}/postgres" + (f"?{options}" if options else ""), autocommit=True) as connection:
        if not connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            connection.execute(f'CREATE DATABASE "{name}"')


def queries_of_the_shop(rng, count):
    """``count`` distinct queries: the demo's judged ones, then variants of them."""
    import csv

    with open(DEMO_DATA / "judgments.csv", encoding="utf-8", newline="") as file:
        base = sorted({row["query"] for row in csv.DictReader(file)})
    extras = ["cheap", "best", "black", "white", "large", "small", "set", "pro", "kit", "2 pack"]
    queries = list(base)
    while len(queries) < count:
        queries.append(f"{rng.choice(base)} {rng.choice(extras)} {rng.randint(1, 99)}")
    return list(dict.fromkeys(queries))[:count]


def fill(args):
    """Write the catalogue, the events and the searches (COPY, so a million rows take seconds)."""
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from catalog.models import Product
    from shopguide.models import DailyEvents, DailySearches, RolledUpDay, SearchEvent, normalized_for_column

    if not Product.objects.exists():
        call_command("load_catalog", str(DEMO_DATA), verbosity=0)
    for model in (SearchEvent, DailySearches, DailyEvents, RolledUpDay):
        model.objects.all().delete()
    rng = random.Random(11)
    keys = [str(pk) for pk in Product.objects.values_list("pk", flat=True)]
    queries = [normalized_for_column(query) for query in queries_of_the_shop(rng, args.queries)]
    weights = [1 / (rank + 1) ** 1.05 for rank in range(len(queries))]
    now = timezone.now()
    start = now - datetime.timedelta(days=args.days)
    span = (now - start).total_seconds()

    events, searches, session = io.StringIO(), {}, 0
    written = 0
    while written < args.events:
        session += 1
        query = rng.choices(queries, weights)[0]
        moment = start + datetime.timedelta(seconds=rng.random() * span)
        day = timezone.localdate(moment)
        found = rng.random() > 0.06  # some searches find nothing in the shop's search
        counts = searches.setdefault((day, query), [0, 0])
        counts[0] += 1
        counts[1] += not found
        shown = rng.sample(keys, STRIP)
        rows = []
        for place, key in enumerate(shown, start=1):
            rows.append((key, "impression", "strip", place))
            if rng.random() < CLICK_AT_FIRST / place:
                rows.append((key, "click", "strip", place))
                if rng.random() < 0.2:
                    rows.append((key, "add_to_cart", "", ""))
                    if rng.random() < 0.5:
                        rows.append((key, "purchase", "", ""))
        if found:
            rows += [(key, "impression", "results", place) for place, key in enumerate(rng.sample(keys, 4), 1)]
        version = 1 if moment < start + datetime.timedelta(days=args.days / 2) else 2
        for key, kind, placement, place in rows:
            events.write(
                f"{query}\t{query}\t{key}\t{kind}\t{placement}\t{place if place else chr(92) + 'N'}\t"
                f"{version if placement == 'strip' else chr(92) + 'N'}\ts{session}\tv{session}\t{moment.isoformat()}\n"
            )
        written += len(rows)
    columns = "query, query_norm, product_key, event, placement, position, model_version, session, voter, created_at"
    with connection.cursor() as cursor:
        with cursor.copy(f"COPY {SearchEvent._meta.db_table} ({columns}) FROM STDIN") as copy:
            copy.write(events.getvalue())
        DailySearches.objects.bulk_create(
            [
                DailySearches(day=day, query_norm=query, searches=n, no_results=none, strips=n)
                for (day, query), (n, none) in searches.items()
            ],
            batch_size=5000,
        )
        cursor.execute(f"ANALYZE {SearchEvent._meta.db_table}")
    return written, session


def timed(function):
    started = time.perf_counter()
    result = function()
    return (time.perf_counter() - started) * 1000, result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None, help="default: shopguide_bench_insights on the demo's server")
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--queries", type=int, default=3000, help="distinct queries")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--rebuild", action="store_true", help="write the events again")
    args = parser.parse_args()
    setup(args)
    ensure_database(os.environ["DATABASE_URL"])
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from django.db import connection
    from django.test import Client
    from django.utils import timezone

    from shopguide.insights import insights
    from shopguide.models import RolledUpDay, SearchEvent

    call_command("migrate", verbosity=0)
    if args.rebuild or not SearchEvent.objects.exists():
        started = time.monotonic()
        written, sessions = fill(args)
        print(f"wrote {written:,} events of {sessions:,} searches in {time.monotonic() - started:.0f} s")
    events = SearchEvent.objects.count()
    first = timezone.localdate(SearchEvent.objects.order_by("created_at").values_list("created_at", flat=True)[0])
    last = timezone.localdate()
    user = get_user_model().objects.filter(username="bench").first() or get_user_model().objects.create_superuser(
        "bench", "bench@example.com", "bench"
    )
    client = Client()
    client.force_login(user)
    url = f"/admin/shopguide/searchevent/insights/?start={first}&end={last}"

    def page():
        response = client.get(url)
        assert response.status_code == 200 and b'id="insights-searches"' in response.content, response.status_code

    def scan():
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {SearchEvent._meta.db_table}")
            return cursor.fetchone()[0]

    RolledUpDay.objects.all().delete()
    cold, _ = timed(page)
    days = (last - first).days + 1
    warm, scans = [], []
    for _ in range(args.rounds):
        RolledUpDay.objects.filter(day=last).update(rolled_up_at=timezone.now())  # today's sums are fresh
        warm.append(timed(page)[0])
        scans.append(timed(scan)[0])
    shown = insights(first, last)
    results = {
        "events": events,
        "days": days,
        "distinct_queries": shown.distinct_queries,
        "searches": shown.totals.searches,
        "strip_views": shown.totals.views,
        "cold_ms": round(cold, 1),
        "page_ms_median": round(statistics.median(warm), 1),
        "page_ms_max": round(max(warm), 1),
        "scan_ms_median": round(statistics.median(scans), 1),
        "page_to_scan": round(statistics.median(warm) / statistics.median(scans), 2),
        "rounds": args.rounds,
    }
    markdown = "\n".join(
        [
            "| events | days | distinct queries | page, sums in place (median / max) | first view, every day summed | "
            "one full scan of the events (same run) | page / scan |",
            "|---|---|---|---|---|---|---|",
            f"| {events:,} | {days} | {results['distinct_queries']:,} | {results['page_ms_median']:.0f} / "
            f"{results['page_ms_max']:.0f} ms | {cold / 1000:.1f} s | {results['scan_ms_median']:.0f} ms | "
            f"{results['page_to_scan']:.2f}x |",
        ]
    )
    publish("insights", results, markdown)


if __name__ == "__main__":
    main()
