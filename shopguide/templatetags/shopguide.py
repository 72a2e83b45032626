"""Template tags: ``{% load shopguide %}``.

``{% recommended_for_search query limit=8 exclude=product as products %}`` puts a list of
``Recommendation`` (``product``, ``score``, ``reason``) in the context;
``{% shopguide_recommendations query limit=8 exclude=product %}`` renders the styled
"Recommended for your search" strip (template ``shopguide/recommendations.html``, which a
shop can override). ``<div {% shopguide_tracking query %}>`` makes any list of
``data-shopguide-product="{{ product|shopguide_id }}"`` elements (search results) report
impressions and clicks, with a signed shopper token the events endpoint requires. Without a
query both read ``?q=`` and then the session's last search. Neither ever raises: a failure
is logged and shows nothing.
"""

import logging

from django import template
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html
from django.utils.translation import gettext

from ..catalog_source import get_catalog_source
from ..services import LAST_QUERY_SESSION_KEY, recommend
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


def safe_recommend(query, limit, exclude):
    if not query:
        return []
    try:
        return recommend(
            query,
            exclude=[exclude] if exclude is not None and not isinstance(exclude, (list, tuple)) else exclude or (),
            limit=limit,
        )
    except Exception:
        logger.exception("Recommendations for %r failed; the page shows none.", query)
        return []


@register.simple_tag(takes_context=True)
def recommended_for_search(context, query=None, limit=8, exclude=None):
    return safe_recommend(query_from(context, query), limit, exclude)


def tracking_attributes(context, query):
    """The attributes the tracking script reads: where to post, the query and a shopper
    token; empty (nothing is tracked) without a request."""
    request = context.get("request")
    if request is None:
        return ""
    try:
        url = reverse("shopguide-api:events")
    except NoReverseMatch:
        logger.warning("shopguide.urls is not included in the project's URLs: pages record no events.")
        return ""
    return format_html(
        'data-shopguide-events="{}" data-shopguide-query="{}" data-shopguide-token="{}"',
        url,
        query,
        shopper_token(request),
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
    return {
        "query": query,
        "title": gettext("Recommended for your search") if title is None else title,
        "recommendations": safe_recommend(query, limit, exclude),
        "tracking": tracking_attributes(context, query),
    }
