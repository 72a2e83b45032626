"""Text normalisation shared by training and serving."""

import re
import unicodedata

_WHITESPACE = re.compile(r"\s+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def normalize_query(query):
    """Canonical form of a search query: NFKC, case-folded, single spaces, no control chars.

    Training pairs and served queries go through this same function, so "Cordless  Drill"
    and "cordless drill" share one cache entry and one set of judgments.
    """
    text = unicodedata.normalize("NFKC", query)
    text = _CONTROL.sub(" ", text)
    return _WHITESPACE.sub(" ", text).strip().casefold()
