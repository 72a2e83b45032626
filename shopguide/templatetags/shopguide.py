"""Template tags: ``{% load shopguide %}``.

``{% recommended_for_search query limit=8 exclude=product as products %}`` puts a list of
``Recommendation`` (``product``, ``score``, ``reason``) in the context;
``{% shopguide_recommendations query limit=8 exclude=product %}`` renders the styled
"Recommended for your search" strip (template ``shopguide/recommendations.html``, which a
shop can override). ``<div {% shopguide_tracking query %}>`` makes any list of
``data-shopguide-product="{{ product|shopguide_id }}"`` elements (search results) report
impressions and clicks, with a signed shopper token the events endpoint requires, each event
saying which list it came from and at which place. Without a query both read ``?q=`` and then
the session's last search. Neither ever raises: a failure is logged and shows nothing. Each
strip rendered is counted (and whether anything matched its query) for the search insights.
"""

import logging

from django import template
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.translation import gettext

from ..catalog_source import get_catalog_source
from ..insights import count_strip
from ..services import LAST_QUERY_SESSION_KEY, after_response, recommend
from ..shoppers import shopper_token

logger = logging.getLogger(__name__)
register = template.Library()


def query_from(context, query):
    if query:
        return str(query)
    request = context.get("request")
    if request is None:
        return ""
    session = getattr(request, "session", None)
    return request.GET.get("q", "") or (session.get(LAST_QUERY_SESSION_KEY, "") if session is not None else "")


def safe_recommend(context, query, limit, exclude):
    """The strip's products for ``query`` (for the shopper of the context's request, who may
    be in an online comparison); the strip is counted for the search insights."""
    if not query:
        return []
    try:
        products = recommend(
            query,
            exclude=[exclude] if exclude is not None and not isinstance(exclude, (list, tuple)) else exclude or (),
            limit=limit,
            request=context.get("request"),
        )
    except Exception:
        logger.exception("Recommendations for %r failed; the page shows none.", query)
        products = []
    try:
        after_response(count_strip, query, bool(products) and getattr(products, "matched", True))
    except Exception:  # outside a request the count is written now, and may fail: the strip shows all the same
        logger.exception("The strip for %r was not counted.", query)
    return products


@register.simple_tag(takes_context=True)
def recommended_for_search(context, query=None, limit=8, exclude=None):
    return safe_recommend(context, query_from(context, query), limit, exclude)


def tracking_attributes(context, query, placement="results", version=None):
    """The attributes the tracking script reads: where to post, the query, a shopper token,
    which list it is (``placement``) and the version that ranked it; empty (nothing is
    tracked) without a request."""
    request = context.get("request")
    if request is None:
        return ""
    try:
        url = reverse("shopguide-api:events")
    except NoReverseMatch:
        logger.warning("shopguide.urls is not included in the project's URLs: pages record no events.")
        return ""
    return format_html(
        'data-shopguide-events="{}" data-shopguide-query="{}" data-shopguide-token="{}" '
        'data-shopguide-placement="{}" data-shopguide-version="{}"',
        url,
        query,
        shopper_token(request),
        placement,
        "" if version is None else version,
    )


@register.simple_tag(takes_context=True)
def shopguide_tracking(context, query=None):
    """Attributes that make an element's ``data-shopguide-product`` children report their
    impressions and clicks for ``query`` (load ``shopguide/tracking.js`` on the page)."""
    return tracking_attributes(context, query_from(context, query))


@register.filter
def shopguide_id(product):
    """The id a product goes by in the API and the tracking script:
    ``data-shopguide-product="{{ product|shopguide_id }}"``."""
    try:
        return get_catalog_source().public_id(product)
    except Exception:
        logger.exception("No shopguide id for %r.", product)
        return ""


@register.inclusion_tag("shopguide/recommendations.html", takes_context=True)
def shopguide_recommendations(context, query=None, limit=8, exclude=None, title=None):
    query = query_from(context, query)
    recommendations = safe_recommend(context, query, limit, exclude)
    return {
        "query": query,
        "title": gettext("Recommended for your search") if title is None else title,
        "recommendations": recommendations,
        "tracking": tracking_attributes(context, query, "strip", getattr(recommendations, "model_version", None)),
    }
