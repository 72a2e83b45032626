"""``recommend()``: the one entry point for template tags, the API and the admin.

With an active version whose vectors are in, a query is answered like the evaluation's
``hybrid`` strategy: the fine-tuned encoder, stemmed BM25 and trigram BM25 over the serving
texts, fused and ordered by the version's learned fusion. Without one, PostgreSQL full-text
search over the shop's text fields answers, so a shop never shows an error instead of products.
"""

import threading
from dataclasses import dataclass

import numpy as np
from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVector
from django.db.models import Max

from .catalog_source import get_catalog_source
from .ml.encoder import Encoder
from .ml.pipeline import ENCODER_FOLDER, CatalogueIndex, Retriever, load_ranker
from .ml.text import normalize_query
from .models import ProductVector
from .versions import active_model

MAX_LIMIT = 50
FTS_CONFIG = "english"


@dataclass
class Recommendation:
    product: object
    score: float
    reason: str


class ServingIndex:
    """The active version's encoder, fusion and the serving vectors, loaded once per process
    and reloaded when a rescore or activation changes them."""

    _lock = threading.Lock()
    _current = None

    def __init__(self, generation, model, keys, texts, vectors):
        self.generation = generation
        self.keys = keys
        self.retriever = Retriever(Encoder(model.folder / ENCODER_FOLDER), CatalogueIndex(keys, texts), vectors,
                                   load_ranker(model.folder))

    @classmethod
    def generation_now(cls):
        model = active_model()
        if model is None:
            return None, None
        latest = ProductVector.objects.filter(model=model).aggregate(latest=Max("updated_at"))["latest"]
        return (model.pk, latest) if latest else None, model

    @classmethod
    def get(cls):
        generation, model = cls.generation_now()
        if generation is None:
            return None
        with cls._lock:
            if cls._current is None or cls._current.generation != generation:
                rows = list(ProductVector.objects.filter(model=model).order_by("product_key")
                            .values_list("product_key", "text", "embedding"))
                keys, texts, vectors = zip(*rows)
                cls._current = cls(generation, model, list(keys), list(texts), np.stack(vectors))
            return cls._current

    def rank(self, query):
        return self.retriever.hybrid([query])[query]


def lexical_keys(query, limit):
    """Fallback without a model: full-text search over the shop's text fields, any word."""
    source = get_catalog_source()
    words = query.split()[:16]
    if not words:
        return []
    search = SearchQuery(words[0], config=FTS_CONFIG)
    for word in words[1:]:
        search |= SearchQuery(word, config=FTS_CONFIG)
    vector = SearchVector(*source.text_fields, config=FTS_CONFIG)
    rows = (source.available_products().annotate(document=vector).filter(document=search)
            .annotate(rank=SearchRank(vector, search)).order_by("-rank", "pk").values_list("pk", flat=True)[:limit])
    return [source.key_for_pk(pk) for pk in rows]


def recommend(query, *, user=None, exclude=(), limit=8):
    """Up to ``limit`` available products for ``query``, best first, each with its reason."""
    limit = max(1, min(int(limit), MAX_LIMIT))
    normalized = normalize_query(query)
    if not normalized:
        return []
    excluded = {str(key) for key in exclude}
    index = ServingIndex.get()
    if index is not None:
        keys = index.rank(normalized)
        reason = f"matches “{query.strip()}”"
    else:
        keys = lexical_keys(normalized, limit + len(excluded) + 10)
        reason = f"contains words of “{query.strip()}”"
    wanted = [key for key in keys if key not in excluded][: limit * 2]
    products = get_catalog_source().products_by_key(wanted)
    ranked = [key for key in wanted if key in products][:limit]
    return [Recommendation(products[key], 1.0 / (rank + 1), reason) for rank, key in enumerate(ranked)]
