"""``recommend()`` and ``similar_products()``: the entry points for template tags, the API and
the admin.

With an active version whose vectors are in, a query is ranked by the version's ranking
(``ml.ranking``: the fine-tuned encoder through pgvector's HNSW index or exact search in
process, stemmed and trigram BM25 over the serving texts, the search memory, the learned
fusion and the reranker, as the version has them), the same code that evaluated it. Without
one, PostgreSQL full-text search over the shop's text fields answers (``fulltext``), so a shop
never shows an error instead of products.

The shop's query rules (``rules``) pin, bury or hide products after ranking, on every path.

Answers are cached per normalised query, keyed by the serving state, so activating a version,
a rescore or a product refresh retires every cached list at once. Inside a request the cache
write waits until the response has been handed over (``after_response``): the shopper does not
wait for it.
"""

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from contextlib import nullcontext
from dataclasses import dataclass

from asgiref.local import Local
from django.core.cache import caches
from django.core.signals import request_finished, request_started
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext, gettext_noop

from . import insights, online
from .catalog_source import get_catalog_source
from .conf import shopguide_settings
from .feedback import most_chosen_products, most_searched_queries, shopper_choices
from .fulltext import search_keys
from .ml.lexical import Analyzer
from .ml.text import normalize_query
from .models import SearchEvent
from .rules import rulebook
from .serving import ServingIndex
from .shoppers import shopper_for

MAX_LIMIT = 50
MAX_QUERY_LENGTH = 256
CACHED_DEPTH = 60  # ranked keys kept per query: room for exclusions and unavailable products
CACHE_ALIAS = "default"
LAST_QUERY_SESSION_KEY = "shopguide_last_query"

logger = logging.getLogger(__name__)
_deferred = Local()  # .calls: what the current request runs after its response (per thread or task)


def _collect_deferred(**kwargs):
    _deferred.calls = []


def _run_deferred(**kwargs):
    calls, _deferred.calls = getattr(_deferred, "calls", None) or [], None
    for function, args in calls:
        try:
            function(*args)
        except Exception:
            logger.exception("shopguide: %s after the response failed", getattr(function, "__qualname__", function))


request_started.connect(_collect_deferred, dispatch_uid="shopguide.services.collect_deferred")
request_finished.connect(_run_deferred, dispatch_uid="shopguide.services.run_deferred")


def after_response(function, *args):
    """Call ``function(*args)`` once the current request's response has been sent (Django's
    ``request_finished``: the server closes the response after writing it), or now outside a
    request (commands, Celery tasks). For work the answer does not depend on."""
    calls = getattr(_deferred, "calls", None)
    if calls is None:
        function(*args)
    else:
        calls.append((function, args))


class LocalCache:
    """A small least-recently-used cache with expiry in this process's memory, thread-safe."""

    def __init__(self, size):
        self.size, self.items, self.lock = size, OrderedDict(), threading.Lock()

    def get(self, key):
        with self.lock:
            item = self.items.get(key)
            if item is None or item[1] < time.monotonic():
                self.items.pop(key, None)
                return None
            self.items.move_to_end(key)
            return item[0]

    def set(self, key, value, timeout):
        with self.lock:
            self.items[key] = (value, time.monotonic() + timeout)
            self.items.move_to_end(key)
            while len(self.items) > self.size:
                self.items.popitem(last=False)

    def clear(self):
        with self.lock:
            self.items.clear()


class Recommendations(list):
    """The ``Recommendation``s of one answer, with the version that ranked them
    (``model_version``; None when full-text search or the shop's popular products answered)
    and whether anything matched the query (``matched``: False when the shop's popular
    products stand in)."""

    def __init__(self, items=(), model_version=None, matched=True):
        super().__init__(items)
        self.model_version = model_version
        self.matched = matched


@dataclass
class Recommendation:
    """One recommended product, its score and reason, presented by the catalogue adapter."""

    product: object
    score: float
    reason: str

    @property
    def key(self):
        return get_catalog_source().key(self.product)

    @property
    def public_id(self):
        return get_catalog_source().public_id(self.product)

    @property
    def title(self):
        return get_catalog_source().title(self.product)

    @property
    def url(self):
        return get_catalog_source().url(self.product)

    @property
    def price(self):
        return get_catalog_source().price(self.product)

    @property
    def image_url(self):
        return get_catalog_source().image_url(self.product)


def serving_state():
    """``(epoch, changes)`` of the vectors ranking this process's queries (see
    ``ServingIndex.serving_state``): every change moves it, so caches keyed by it never serve
    stale answers, and a process still on the previous index never files its answers under
    the new state."""
    return ServingIndex.serving_state()


def cache_key(normalized, state=None):
    """The shared cache's key of a normalised query's answer ranked in ``state`` (default:
    this process's ``serving_state()``)."""
    epoch, changes = state or serving_state()
    digest = hashlib.sha256(normalized.encode()).hexdigest()[:32]
    return f"shopguide:answers:{epoch}.{changes}:{digest}"  # "answers": rows hold (reason, value)


WORDS = Analyzer()  # the analyser of the lexical side: reasons name the words it matched


def word_stems(query):
    """``[(word as typed, its stems)]`` for each word of ``query``."""
    return [(word, WORDS(word)) for word in query.split()]


def matched_words(stems, terms):
    """The words of a query (``word_stems``) found among a product's analysed ``terms``."""
    terms = set(terms)
    return [word for word, word_terms in stems if any(term in terms for term in word_terms)]


# Why a product is recommended, in words a shopper reads (translated when shown: answers are
# cached as ``(reason, value)``, so one cache serves every language).
REASONS = {
    "bought": gettext_noop("often bought after searching “{}”"),
    "chosen": gettext_noop("often chosen by shoppers who searched “{}”"),
    "matches": gettext_noop("matches “{}”"),
    "close": gettext_noop("close match for “{}”"),
    "remembered": gettext_noop("chosen by shoppers for similar searches"),
    "related": gettext_noop("related to “{}”"),
    "words": gettext_noop("matches words of “{}”"),
    "popular": gettext_noop("popular in this shop"),
    "similar": gettext_noop("similar to “{}”"),
    "featured": gettext_noop("featured by the shop"),
}


def reason_text(reason):
    """The words of a ``(reason, value)`` in the active language."""
    name, value = reason
    return gettext(REASONS[name]).format(value)


def reason_for(key, query, ranked, choices, stems):
    """A short, truthful account of why ``key`` is recommended for ``query`` (``stems``: the
    ``word_stems`` of the corrected query), as ``(reason, value)``: see ``REASONS``."""
    choice = choices.get(key)
    if choice in ("bought", "chosen"):
        return choice, query
    if key in ranked.lexical:
        words = matched_words(stems, ranked.terms.get(key, ()))
        return "matches", " ".join(words) or ranked.corrected
    if key in ranked.spelling:
        return "close", query
    if key in ranked.remembered:
        return "remembered", ""
    return "related", query


def popular_keys(limit):
    """Products shoppers chose most (``feedback``'s rule), then the rest of the catalogue:
    what a strip shows when nothing matches, so it is never empty while products are for sale."""
    source = get_catalog_source()
    keys = most_chosen_products(limit * 3)
    available = source.products_by_key(keys)
    keys = [key for key in keys if key in available][:limit]
    if len(keys) < limit:
        more = source.available_products().exclude(pk__in=[available[key].pk for key in keys])
        keys += [source.key_for_pk(pk) for pk in more.order_by("pk").values_list("pk", flat=True)[: limit - len(keys)]]
    return keys


def ranked_with_reasons(normalized, rank):
    """``[(key, score, (reason, value))]`` of ``rank(normalized)`` (a version's ``Ranked``),
    best first: the first ``CACHED_DEPTH``, each with the reason the strip gives."""
    with shopper_choices(normalized) as choices_among:
        found = rank(normalized)
        top = found.keys[:CACHED_DEPTH]
        choices = choices_among(top)
    stems = word_stems(found.corrected)
    return [
        (key, round(1.0 / (place + 1), 4), reason_for(key, normalized, found, choices, stems))
        for place, key in enumerate(top)
    ]


def ranked_for(normalized, index):
    """``(version, [(key, score, (reason, value))])`` for a normalised query ranked by
    ``index`` (a ``ServingIndex``, or None: full-text search), best first, before any
    filtering; ``version`` is the number of the version that ranked it, or None."""
    version = index.model.version if index is not None else None
    if index is None:
        keys = search_keys(normalized, CACHED_DEPTH)
        ranked = [(key, round(1.0 / (rank + 1), 4), ("words", normalized)) for rank, key in enumerate(keys)]
    else:
        ranked = ranked_with_reasons(normalized, index.rank)
    if not ranked:
        version, ranked = None, [(key, 0.0, ("popular", "")) for key in popular_keys(MAX_LIMIT)]
    return version, ranked


def warm_cache(limit=None):
    """Compute and cache the recommendations of the ``WARM_QUERIES`` most frequent queries;
    return how many were computed."""
    queries = most_searched_queries(shopguide_settings.WARM_QUERIES if limit is None else limit)
    ServingIndex.get(wait=True)  # the new version's index, not the one it replaces
    for query in queries:
        recommend(query)
    return len(queries)


def remember_search(request, query):
    """Keep the shopper's last search in their session, for the product pages they open next;
    a shopper without a session gets none for it (a search must not cost a stored row)."""
    query = " ".join(str(query).split())[:MAX_QUERY_LENGTH]
    session = getattr(request, "session", None)
    if query and session is not None and session.session_key:
        session[LAST_QUERY_SESSION_KEY] = query


def record_search(request, query, *, results):
    """Call from the shop's search view, once per search (not per page of results): keeps the
    search in the shopper's session for the product pages they open next
    (``remember_search``) and counts it, and whether the shop's search found nothing
    (``results``: how many products it found), for the search insights. The count is written
    after the response has been sent."""
    remember_search(request, query)
    after_response(insights.count_search, str(query)[: MAX_QUERY_LENGTH * 4], results)


def record_add_to_cart(product, *, request=None, user=None, query=None):
    """Record that a shopper put ``product`` in their cart after a search: call it from the
    shop's cart view. See ``record_server_event``."""
    return record_server_event(SearchEvent.Kind.ADD_TO_CART, product, request=request, user=user, query=query)


def record_purchase(product, *, request=None, user=None, query=None):
    """Record that a shopper bought ``product`` after a search: call it from the shop's
    checkout, once per product of a placed order. See ``record_server_event``."""
    return record_server_event(SearchEvent.Kind.PURCHASE, product, request=request, user=user, query=query)


def record_server_event(kind, product, *, request=None, user=None, query=None):
    """Store a shopper's ``kind`` event for ``product`` (an instance of the product model)
    after searching ``query``, by default the last search of the request's session; return
    the ``SearchEvent``, or None when no search is known (an event without one teaches
    nothing). Pass the ``request`` (the shopper is weighed by their network) or, where the
    order is completed without one (a payment provider's callback), the ``user``.
    Add-to-cart and purchase events are recorded only this way, never by the public API."""
    if kind not in SearchEvent.Kind.values:
        raise ValueError(f"{kind!r} is not an event kind ({', '.join(SearchEvent.Kind.values)}).")
    if request is None and user is None:
        raise TypeError("record_server_event() needs the request or the user.")
    session = getattr(request, "session", None)
    if query is None:
        query = session.get(LAST_QUERY_SESSION_KEY, "") if session is not None else ""
    query = " ".join(str(query).split())[:MAX_QUERY_LENGTH]
    if not normalize_query(query):
        return None
    shopper = shopper_for(request, user if user is not None else getattr(request, "user", None))
    return SearchEvent.objects.create(
        query=query,
        product_key=get_catalog_source().key(product),
        event=kind,
        session=shopper.id,
        voter=shopper.voter,
        created_at=timezone.now(),
    )


def with_shared_cache(use, failing):
    """``use(cache)`` with the shared cache. The cache is a convenience: one that fails (a
    missing table, Redis down) is logged (``failing`` says what that costs) and None returned.
    Inside a transaction the cache's work takes a savepoint, so a database cache's error
    cannot abort the caller's transaction."""
    try:
        with transaction.atomic() if connection.in_atomic_block else nullcontext():
            return use(caches[CACHE_ALIAS])
    except Exception as exc:
        logger.warning("shopguide: the %r cache failed (%s: %s); %s.", CACHE_ALIAS, type(exc).__name__, exc, failing)
        return None


def cached(key):
    """The shared cache's answer for ``key``, or None."""
    return with_shared_cache(lambda cache: cache.get(key), "answering without it")


def keep(key, answer):
    with_shared_cache(lambda cache: cache.set(key, answer, shopguide_settings.CACHE_TIMEOUT), "the answer is not kept")


def normalized_query(query):
    """The normalised form of ``query`` that answers, caches and rules are keyed by."""
    return normalize_query(str(query)[: MAX_QUERY_LENGTH * 4])[:MAX_QUERY_LENGTH]


def recommend(query, *, user=None, exclude=(), limit=8, request=None):
    """Up to ``limit`` (at most 50) available products for ``query``, best first: a list of
    ``Recommendation(product, score, reason)`` whose ``model_version`` names the version that
    ranked them (None for full-text search). ``exclude``: products or keys to leave out (the
    product on show). When nothing matches, the shop's most chosen products fill the list,
    so it is empty only for an empty query or catalogue. The shop's query rules in effect
    for ``query`` apply last. With the shopper's ``request`` (the template tags pass it),
    a shopper in a running online comparison is shown both versions' rankings interleaved
    (``online``). ``user`` is accepted for personalisation and not used yet."""
    limit = max(1, min(int(limit), MAX_LIMIT))
    normalized = normalized_query(query)
    if not normalized:
        return Recommendations()
    index = ServingIndex.get()
    key = cache_key(normalized, ServingIndex.state_of(index))
    answer = cached(key)
    if answer is None:
        answer = ranked_for(normalized, index)
        after_response(keep, key, answer)
    version, ranked = answer
    matched = bool(ranked) and ranked[0][2][0] != "popular"
    interleaving = online.interleaving_for(request, index) if request is not None and version is not None else None
    teams = None
    if interleaving is not None:
        ranked, teams = interleaving.interleave(
            normalized, ranked, candidate_rows(normalized, key, interleaving), CACHED_DEPTH
        )
    ranked = rulebook().apply(normalized, ranked)  # the shop's rules for this search, if any
    items = materialise(ranked, exclude, limit)
    if teams is not None:
        pinned = {row[0] for row in ranked if row[2][0] == "featured"}  # the shop's choice: neither version's
        shown = {item.key: teams[item.key] for item in items if item.key in teams and item.key not in pinned}
        after_response(interleaving.remember, normalized, shown)
    return Recommendations(items, version, matched)


def candidate_rows(normalized, serving_key, interleaving):
    """The rows of the candidate under online comparison for ``normalized``, cached beside the
    serving version's answer (under ``serving_key``'s serving state)."""
    key = f"{serving_key}:candidate:{interleaving.comparison.candidate.version}"
    rows = cached(key)
    if rows is None:
        rows = ranked_with_reasons(normalized, interleaving.rank)
        after_response(keep, key, rows)
    return rows


def similar_products(product, limit=8):
    """Products like ``product`` (close in the serving version's vector space), best first;
    empty without a serving version."""
    limit = max(1, min(int(limit), MAX_LIMIT))
    source = get_catalog_source()
    index = ServingIndex.get()
    if index is None:
        return Recommendations()
    title = source.title(product)
    keys = index.similar(source.key(product), limit + 10)
    return Recommendations(
        materialise(
            [(key, round(1.0 / (rank + 1), 4), ("similar", title)) for rank, key in enumerate(keys)], (), limit
        ),
        index.model.version,
    )


def materialise(ranked, exclude, limit):
    """``Recommendation``s for the first ``limit`` rows of ``ranked`` whose products are
    available and not excluded. The serving index leaves unavailable products out already,
    so one query for ``limit`` products is the rule; a product that went out of stock since
    the list was cached costs a second one, for the rest of the list."""
    source = get_catalog_source()
    excluded = {source.key(item) if hasattr(item, "pk") else str(item) for item in exclude}
    wanted = [row for row in ranked if row[0] not in excluded]
    rows = wanted[:limit]
    products = source.products_by_key([row[0] for row in rows])
    if len(products) < len(rows):
        rows = wanted
        products.update(source.products_by_key([row[0] for row in wanted[limit:]]))
    return [
        Recommendation(products[key], score, reason_text(reason)) for key, score, reason in rows if key in products
    ][:limit]
