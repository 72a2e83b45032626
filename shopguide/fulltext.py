"""PostgreSQL full-text search over the shop's text fields: what answers while no version
serves, and what a first version must beat to serve (see ``training``)."""

from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVector

from .catalog_source import get_catalog_source

FTS_CONFIG = "english"
MAX_WORDS = 16


def search_keys(query, limit):
    """Keys of the available products that match any word of ``query``, best first."""
    source = get_catalog_source()
    words = query.split()[:MAX_WORDS]
    if not words:
        return []
    search = SearchQuery(words[0], config=FTS_CONFIG)
    for word in words[1:]:
        search |= SearchQuery(word, config=FTS_CONFIG)
    vector = SearchVector(*source.text_fields, config=FTS_CONFIG)
    rows = (
        source.available_products()
        .annotate(document=vector)
        .filter(document=search)
        .annotate(rank=SearchRank(vector, search))
        .order_by("-rank", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    return [source.key_for_pk(pk) for pk in rows]
