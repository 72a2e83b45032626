"""Query rules: what the shop decides for a search, applied after ranking on every path.

A ``QueryRule`` matches a normalised search exactly, or every search that contains all of its
words, while it is enabled and between its dates. Its products are pinned at positions (shown
with the reason "featured by the shop"), buried after the rest, or hidden. Rules apply to
what ``services.recommend`` returns, so the template tags, the API and the product pages'
strips all show them; the shared cache keeps rankings without rules, and the API's answers
in memory are keyed by ``token()``, so a change shows at the next request.

Where several rules match one search: a hidden product stays hidden whatever else a rule
says; pins are placed by position, an exact rule's before a "contains" rule's at the same
position; a product pinned twice takes its first place.

Each process holds the rules in memory (``rulebook()``), loaded again when
``ServingState.rules`` moves: that counter is read at most once a second, and at once in the
process that changed the rules.
"""

import logging
import threading
import time
from collections import defaultdict
from contextlib import nullcontext
from dataclasses import dataclass, field

from django.db import connection, transaction
from django.db.models.signals import post_delete, post_save
from django.utils import timezone

from .models import QueryRule, RuleProduct, ServingState

STATE_TTL = 1.0  # seconds a process trusts the rules counter it read last

logger = logging.getLogger(__name__)


@dataclass
class LoadedRule:
    pk: int
    exact: bool
    words: frozenset
    enabled: bool
    starts_at: object
    ends_at: object
    pins: list = field(default_factory=list)  # [(position, key)]
    buried: set = field(default_factory=set)
    hidden: set = field(default_factory=set)

    def in_effect(self, now):
        return (
            self.enabled
            and (self.starts_at is None or self.starts_at <= now)
            and (self.ends_at is None or now < self.ends_at)
        )


class RuleBook:
    """The rules of one ``version`` of the rules counter, indexed for matching."""

    def __init__(self, version, rules=()):
        """``rules``: ``(LoadedRule, normalised query)`` pairs."""
        self.version = version
        self.exact = defaultdict(list)  # normalised query -> [LoadedRule]
        self.contains = []
        for rule, query in rules:
            if rule.exact:
                self.exact[query].append(rule)
            else:
                self.contains.append(rule)

    @classmethod
    def load(cls, version):
        loaded = {}
        for rule in QueryRule.objects.filter(enabled=True).order_by("pk"):
            loaded[rule.pk] = (
                LoadedRule(
                    pk=rule.pk,
                    exact=rule.match == QueryRule.Match.EXACT,
                    words=frozenset(rule.query_norm.split()),
                    enabled=rule.enabled,
                    starts_at=rule.starts_at,
                    ends_at=rule.ends_at,
                ),
                rule.query_norm,
            )
        for item in RuleProduct.objects.filter(rule__in=loaded).order_by("rule", "position", "pk"):
            rule = loaded[item.rule_id][0]
            if item.action == RuleProduct.Action.PIN:
                rule.pins.append((item.position, item.product_key))
            elif item.action == RuleProduct.Action.BURY:
                rule.buried.add(item.product_key)
            else:
                rule.hidden.add(item.product_key)
        return cls(version, loaded.values())

    def matching(self, normalized, now=None):
        """The rules in effect for the normalised search ``normalized``: exact ones first."""
        now = now or timezone.now()
        words = set(normalized.split())
        found = self.exact.get(normalized, []) + [rule for rule in self.contains if rule.words <= words]
        return [rule for rule in found if rule.in_effect(now)]

    def token(self, normalized, now=None):
        """What an answer for ``normalized`` depends on: changes to the rules and which of them
        are in effect now (a rule that starts or ends changes it without any change)."""
        return self.version, tuple(rule.pk for rule in self.matching(normalized, now))

    def apply(self, normalized, ranked, now=None):
        """``ranked`` (``[(key, score, (reason, value))]``, best first) as the rules in effect
        for ``normalized`` want it shown; scores follow the new order."""
        rules = self.matching(normalized, now)
        if not rules:
            return ranked
        hidden = set().union(*(rule.hidden for rule in rules))
        buried = set().union(*(rule.buried for rule in rules)) - hidden
        pins, pinned = [], set()
        for position, _order, _entry, key in sorted(
            (position, order, entry, key)
            for order, rule in enumerate(rules)
            for entry, (position, key) in enumerate(rule.pins)  # loaded by position, then as entered
        ):
            if key not in hidden and key not in pinned:
                pins.append((position, key))
                pinned.add(key)
        rest = [row for row in ranked if row[0] not in hidden and row[0] not in pinned]
        shown = [row for row in rest if row[0] not in buried] + [row for row in rest if row[0] in buried]
        place = -1
        for position, key in pins:  # ascending: each lands where asked, or after a pin that took its place
            place = min(max(position - 1, place + 1), len(shown))
            shown.insert(place, (key, 0.0, ("featured", "")))
        return [(key, round(1.0 / (rank + 1), 4), reason) for rank, (key, _, reason) in enumerate(shown)]


class _Current:
    lock = threading.Lock()
    book = None
    read_at = 0.0


def rulebook():
    """This process's ``RuleBook``, loaded again when the rules changed (see the module
    docstring). Rules that cannot be read (the database fails, a migration is missing) are
    logged and the last ones read, or none, apply: a shop never shows an error instead of
    products. Inside a transaction the reads take a savepoint, so they cannot abort it."""
    now = time.monotonic()
    book = _Current.book
    if book is not None and now - _Current.read_at <= STATE_TTL and ServingState.changed_here_at < _Current.read_at:
        return book
    with _Current.lock:
        try:
            with transaction.atomic() if connection.in_atomic_block else nullcontext():
                version = ServingState.objects.filter(pk=1).values_list("rules", flat=True).first() or 0
                if _Current.book is None or _Current.book.version != version:
                    _Current.book = RuleBook.load(version)
        except Exception as exc:
            logger.warning("shopguide: the query rules could not be read (%s: %s); %s.", type(exc).__name__, exc,
                           "the last ones read apply" if _Current.book else "none apply")  # fmt: skip
            if _Current.book is None:
                return RuleBook(None)  # read again at the next answer
        _Current.read_at = now
        return _Current.book


def forget():
    """Drop this process's rules (tests)."""
    with _Current.lock:
        _Current.book, _Current.read_at = None, 0.0


def _rules_changed(sender, **kwargs):
    ServingState.bump_rules()


def connect():
    for model in (QueryRule, RuleProduct):
        post_save.connect(_rules_changed, sender=model, dispatch_uid=f"shopguide.rules.{model.__name__}.saved")
        post_delete.connect(_rules_changed, sender=model, dispatch_uid=f"shopguide.rules.{model.__name__}.deleted")
