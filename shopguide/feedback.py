"""What shoppers' events may teach, and the one rule that decides it.

Events are anybody's word, so none counts alone: what shoppers did with a product after a
search counts only when at least ``MIN_SHOPPERS`` distinct voters (``shoppers``: one per
client network) did it, and each voter counts once, with their strongest event. The rule
holds for everything events feed: the grades training learns from (and so the search memory
and the held-out queries), the reasons a strip gives, the shop's popular products and the
queries whose answers are computed ahead.

A (query, product) pair's grade is the best grade that ``MIN_SHOPPERS`` voters reached: with
three voters, three clicks and one purchase make a click (1), not a purchase.
"""

from contextlib import contextmanager

from django.db import connection
from django.db.models import Count

from .conf import shopguide_settings
from .models import SearchEvent
from .serving import pipelined_cursor

Kind = SearchEvent.Kind
EVENT_GRADES = {Kind.PURCHASE: 3.0, Kind.ADD_TO_CART: 2.0, Kind.CLICK: 1.0, Kind.IMPRESSION: 0.0}
TABLE = SearchEvent._meta.db_table


def grade_sql():
    cases = " ".join(f"WHEN '{kind}' THEN {grade}" for kind, grade in EVENT_GRADES.items())
    return f"CASE event {cases} END"


def verified_grades():
    """``{query: {product key: grade}}`` for the pairs enough distinct voters produced."""
    sql = f"""
        SELECT query_norm, product_key, grade FROM (
            SELECT query_norm, product_key, grade,
                   row_number() OVER (PARTITION BY query_norm, product_key ORDER BY grade DESC) AS place
            FROM (
                SELECT query_norm, product_key, voter, max({grade_sql()}) AS grade
                FROM {TABLE} GROUP BY query_norm, product_key, voter
            ) AS by_voter
        ) AS ranked
        WHERE place = %s
    """
    judgments = {}
    with connection.cursor() as cursor:
        cursor.execute(sql, [shopguide_settings.MIN_SHOPPERS])
        for query, key, grade in cursor:
            judgments.setdefault(query, {})[key] = float(grade)
    return judgments


@contextmanager
def shopper_choices(normalized):
    """Yields ``choices(keys)``: ``{key: "bought" or "chosen"}`` for the products among
    ``keys`` that at least ``MIN_SHOPPERS`` voters bought, or else chose (clicked, put in a
    cart or bought), after searching ``normalized``. The query (one plain query on the
    query_norm index) is sent at once and its rows read when ``choices`` is called:
    PostgreSQL answers it while this process ranks the products."""
    least = shopguide_settings.MIN_SHOPPERS
    with pipelined_cursor() as cursor:
        cursor.execute(
            f"SELECT product_key, count(DISTINCT voter) FILTER (WHERE event = 'purchase') >= %s FROM {TABLE} "
            "WHERE query_norm = %s AND event <> 'impression' GROUP BY 1 HAVING count(DISTINCT voter) >= %s",
            [least, normalized, least],
        )

        def choices(keys):
            wanted = set(keys)
            return {key: "bought" if bought else "chosen" for key, bought in cursor.fetchall() if key in wanted}

        yield choices


def most_chosen_products(limit):
    """Keys of the products most voters chose (clicked, put in a cart, bought) after any
    search, at least ``MIN_SHOPPERS`` each, most first."""
    rows = (
        SearchEvent.objects.exclude(event=Kind.IMPRESSION)
        .values("product_key")
        .annotate(voters=Count("voter", distinct=True))
        .filter(voters__gte=shopguide_settings.MIN_SHOPPERS)
        .order_by("-voters", "product_key")[:limit]
    )
    return [row["product_key"] for row in rows]


def most_searched_queries(limit):
    """The normalised queries most voters' events name, at least ``MIN_SHOPPERS`` each."""
    rows = (
        SearchEvent.objects.values("query_norm")
        .annotate(voters=Count("voter", distinct=True))
        .filter(voters__gte=shopguide_settings.MIN_SHOPPERS)
        .order_by("-voters", "query_norm")[:limit]
    )
    return [row["query_norm"] for row in rows]
