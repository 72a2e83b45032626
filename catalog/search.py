"""The demo shop's own search: PostgreSQL full-text search over title and description."""

import re

from django.contrib.postgres.search import SearchQuery, SearchRank
from django.db.models import F

from .models import SEARCH_CONFIG, Product

MAX_TERMS = 16
_WORD = re.compile(r"\w+")


def search_products(query, queryset=None):
    """Products matching ``query``, best first, and whether every word had to match.

    Like most Django shops, it first asks for products containing all the words
    (``plainto_tsquery``); when none do, it settles for products containing any of them.
    """
    queryset = Product.objects.all() if queryset is None else queryset
    all_words = SearchQuery(query, config=SEARCH_CONFIG)
    matches = ranked(queryset, all_words)
    if matches.exists():
        return matches, True
    terms = _WORD.findall(query)[:MAX_TERMS]
    if not terms:
        return queryset.none(), True
    any_word = SearchQuery(terms[0], config=SEARCH_CONFIG)
    for term in terms[1:]:
        any_word |= SearchQuery(term, config=SEARCH_CONFIG)
    return ranked(queryset, any_word), False


def ranked(queryset, search_query):
    return (
        queryset.filter(search_vector=search_query)
        .annotate(rank=SearchRank(F("search_vector"), search_query))
        .order_by("-rank", "pk")
    )
