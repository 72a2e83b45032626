"""shopguide's own tables. Products are referred to by key (the host model's primary key as a
string), never by a foreign key, so shopguide works with any product model."""

import time

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models, transaction
from django.utils import timezone

from .embeddings import DIMENSIONS, EmbeddingField
from .ml.text import normalize_query

QUERY_LENGTH = 256


def normalized_for_column(query):
    """``query`` normalised and cut to its column: case folding and NFKC can lengthen a query
    ("ß" becomes "ss"), and a query of 256 letters must still be stored, not refused."""
    return normalize_query(query)[:QUERY_LENGTH]


class QueryNormalizingModel(models.Model):
    query = models.CharField(max_length=256)
    query_norm = models.CharField("normalised query", max_length=256, db_index=True, editable=False)

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        self.query_norm = normalized_for_column(self.query)
        super().save(*args, **kwargs)


class Judgment(QueryNormalizingModel):
    """How relevant a product is to a query: a graded label, higher is more relevant."""

    class Source(models.TextChoices):
        MANUAL = "manual", "entered by a merchandiser"
        IMPORTED = "imported", "imported from a file"

    product_key = models.CharField(max_length=64, db_index=True)
    grade = models.FloatField(help_text="0 = irrelevant; higher is more relevant.")
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.MANUAL)
    split = models.CharField(
        max_length=16,
        blank=True,
        help_text="Optional dataset split (train / dev / test) from an imported file.",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["query_norm", "product_key"], name="shopguide_judgment_unique"),
            models.CheckConstraint(condition=models.Q(grade__gte=0), name="shopguide_judgment_grade_gte_0"),
        ]
        ordering = ["query_norm", "-grade"]

    def __str__(self):
        return f"{self.query!r} -> {self.product_key}: {self.grade:g}"


class SearchEvent(QueryNormalizingModel):
    """Implicit feedback: what a shopper did with a product shown for a query."""

    class Kind(models.TextChoices):
        IMPRESSION = "impression", "impression"
        CLICK = "click", "click"
        ADD_TO_CART = "add_to_cart", "add to cart"
        PURCHASE = "purchase", "purchase"

    class Placement(models.TextChoices):
        STRIP = "strip", "shopguide's strip"
        RESULTS = "results", "the shop's results"

    product_key = models.CharField(max_length=64, db_index=True)
    event = models.CharField(max_length=16, choices=Kind.choices)
    placement = models.CharField(
        max_length=8, choices=Placement.choices, blank=True, help_text="The list it was shown in (browser events)."
    )
    position = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Its place in that list, 1 first.")
    model_version = models.PositiveIntegerField(
        null=True, blank=True, help_text="The version that ranked the strip it was shown in."
    )
    session = models.CharField(max_length=64, blank=True, help_text="The shopper's pseudonymous id.")
    voter = models.CharField(
        max_length=64,
        help_text="Who the event is weighed as: a keyed hash of the shopper's network (see shoppers.py).",
    )
    created_at = models.DateTimeField(db_index=True)
    # Set for imported events so that importing the same file twice stores each event once.
    import_key = models.CharField(max_length=64, null=True, blank=True, unique=True, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.event} {self.product_key} for {self.query!r}"


class RecommenderModel(models.Model):
    """One trained version of the recommender: its files, data, settings and measured quality."""

    class Status(models.TextChoices):
        READY = "ready", "ready"
        FAILED = "failed", "failed"
        PRUNED = "pruned", "files deleted"  # kept for its figures; it can no longer serve

    version = models.PositiveIntegerField(unique=True, editable=False)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.READY)
    is_active = models.BooleanField(default=False, editable=False)
    base_model = models.CharField(max_length=500)
    artifact_path = models.CharField(max_length=500, help_text="Its name in the versions' storage.")
    checksum = models.CharField(max_length=64)
    hyperparameters = models.JSONField(default=dict)
    data_counts = models.JSONField(default=dict)
    metrics_before = models.JSONField(default=dict, help_text="Base model on the held-out queries.")
    metrics_after = models.JSONField(default=dict, help_text="This version on the same held-out queries.")
    reranker_weight = models.FloatField(default=0.0, help_text="0: the reranker is not used.")
    query_encoder = models.JSONField(
        default=dict,
        blank=True,
        help_text="The ONNX export's check: whether web processes encode queries without torch.",
    )
    activation = models.TextField(blank=True, help_text="What the activation gate compared and decided.")
    loss_curve = models.JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    activated_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-version"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_active"], condition=models.Q(is_active=True), name="shopguide_one_active_model"
            ),
        ]

    def __str__(self):
        return f"v{self.version}" + (" (active)" if self.is_active else "")

    @property
    def folder(self):
        """A local folder with the version's files (see ``version_storage``)."""
        from .version_storage import version_folder

        return version_folder(self)

    @property
    def rerank_depth(self):
        """Fused candidates its reranker reorders (the training recipe's setting)."""
        from .ml.ranking import RERANK_DEPTH  # not at import time: the ranking module loads the ML stack

        return self.hyperparameters.get("pipeline", {}).get("rerank_depth", RERANK_DEPTH)

    def ndcg(self, which="after", strategy="hybrid", k=10):
        metrics = self.metrics_after if which == "after" else self.metrics_before
        return (metrics.get(strategy) or {}).get(f"ndcg@{k}")


class TrainingRun(models.Model):
    """One request to train: its progress while it runs and its outcome."""

    class Status(models.TextChoices):
        QUEUED = "queued", "queued"
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"
        CANCELLED = "cancelled", "cancelled"

    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED, db_index=True)
    stage = models.CharField(max_length=100, blank=True)
    progress = models.FloatField(default=0.0, help_text="Percent of the current stage.")
    options = models.JSONField(default=dict)
    loss_curve = models.JSONField(default=dict)
    metrics = models.JSONField(default=dict)
    error = models.TextField(blank=True)
    task_id = models.CharField(max_length=255, blank=True)
    worker = models.CharField(max_length=255, blank=True, help_text="Celery worker that runs it.")
    heartbeat_at = models.DateTimeField(null=True, blank=True, help_text="Last progress report.")
    started_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    model = models.ForeignKey(RecommenderModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="runs")
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"Training run #{self.pk} ({self.status})"


class ProductVector(models.Model):
    """The serving copy of a product: its text, full-text document and embedding, as encoded by
    ``model``. Only whole rescoring swaps replace these rows, in one transaction."""

    product_key = models.CharField(max_length=64, unique=True)
    model = models.ForeignKey(RecommenderModel, on_delete=models.CASCADE, related_name="+")
    text = models.TextField()
    embedding = EmbeddingField(dimensions=DIMENSIONS)
    updated_at = models.DateTimeField(auto_now=True, db_index=True)

    def __str__(self):
        return f"vector of {self.product_key} (v{self.model.version})"


class ServingState(models.Model):
    """One row of counters that tell serving processes what changed: ``epoch`` when a whole
    set of vectors was swapped in or a version activated, ``changes`` on every change at all.
    Cached recommendations are keyed by both, so any change retires them."""

    epoch = models.PositiveBigIntegerField(default=0)
    changes = models.PositiveBigIntegerField(default=0)
    rules = models.PositiveBigIntegerField(default=0, help_text="Moves on every change of the query rules.")
    updated_at = models.DateTimeField(auto_now=True)

    # When this process last committed a change (time.monotonic()): its own reads of the state
    # then skip their short trust period, so a change is seen at once where it was made.
    changed_here_at = 0.0

    def __str__(self):
        return f"serving epoch {self.epoch}, change {self.changes}"

    @classmethod
    def mark_changed_here(cls):
        cls.changed_here_at = time.monotonic()

    @classmethod
    def bump(cls, epoch=False):
        """Count a change (and a new epoch when ``epoch``); call inside the changing transaction."""
        counters = {"changes": models.F("changes") + 1, "updated_at": timezone.now()}
        if epoch:
            counters["epoch"] = models.F("epoch") + 1
        if not cls.objects.filter(pk=1).update(**counters):
            # A new row starts from the time in ms, so it never repeats the epoch of a row
            # that was deleted (a flushed database): caches keyed by it cannot come back.
            start = int(timezone.now().timestamp() * 1000)
            cls.objects.get_or_create(pk=1, defaults={"epoch": start, "changes": start})
        transaction.on_commit(cls.mark_changed_here)

    @classmethod
    def bump_rules(cls):
        """Count a change of the query rules; call inside the changing transaction."""
        if not cls.objects.filter(pk=1).update(rules=models.F("rules") + 1, updated_at=timezone.now()):
            start = int(timezone.now().timestamp() * 1000)
            cls.objects.get_or_create(pk=1, defaults={"epoch": start, "changes": start, "rules": start})
        transaction.on_commit(cls.mark_changed_here)


class Rescore(models.Model):
    """Encoding the catalogue with one version, in chunks that workers share; the vectors
    replace the serving ones only when every chunk is done."""

    class Status(models.TextChoices):
        RUNNING = "running", "running"
        SUCCEEDED = "succeeded", "succeeded"
        FAILED = "failed", "failed"

    model = models.ForeignKey(RecommenderModel, on_delete=models.CASCADE, related_name="rescores")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.RUNNING)
    activate = models.BooleanField(default=True, help_text="Make the version active when the vectors are in.")
    reuse_vectors = models.BooleanField(
        default=True, help_text="Take the vectors the training run stored for products whose text is unchanged."
    )
    chunks = models.PositiveIntegerField(default=0)
    done_chunks = ArrayField(models.PositiveIntegerField(), default=list, blank=True)
    products = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"Rescore #{self.pk} with v{self.model.version} ({self.status})"


class PendingVector(models.Model):
    """A vector written by a rescore chunk, waiting for the swap."""

    rescore = models.ForeignKey(Rescore, on_delete=models.CASCADE, related_name="pending")
    chunk = models.PositiveIntegerField()
    product_key = models.CharField(max_length=64)
    text = models.TextField()
    embedding = EmbeddingField(dimensions=DIMENSIONS)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["rescore", "product_key"], name="shopguide_pending_unique"),
        ]
        indexes = [models.Index(fields=["rescore", "chunk"])]


class QueryRule(QueryNormalizingModel):
    """A merchandiser's rule for a search: products pinned at positions, buried or hidden in
    what shopguide recommends for it, on every path (template tags, API), optionally between
    two dates. ``query`` is matched normalised (case, accents and spacing do not matter)."""

    class Match(models.TextChoices):
        EXACT = "exact", "the search is exactly"
        CONTAINS = "contains", "the search contains every word of"

    match = models.CharField(max_length=16, choices=Match.choices, default=Match.EXACT)
    enabled = models.BooleanField(default=True)
    starts_at = models.DateTimeField(null=True, blank=True, help_text="Empty: in effect from now on.")
    ends_at = models.DateTimeField(null=True, blank=True, help_text="Empty: in effect until disabled.")
    note = models.CharField(max_length=200, blank=True, help_text="Why the rule exists (for other staff).")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+", editable=False
    )

    class Meta:
        ordering = ["query_norm", "pk"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(starts_at__isnull=True)
                | models.Q(ends_at__isnull=True)
                | models.Q(ends_at__gt=models.F("starts_at")),
                name="shopguide_queryrule_ends_after_start",
            ),
        ]

    def __str__(self):
        return f"{self.get_match_display()} “{self.query}”"

    def in_effect(self, now):
        return (
            self.enabled
            and (self.starts_at is None or self.starts_at <= now)
            and (self.ends_at is None or now < self.ends_at)
        )


class RuleProduct(models.Model):
    """What a ``QueryRule`` does with one product."""

    class Action(models.TextChoices):
        PIN = "pin", "pin at a position"
        BURY = "bury", "bury (after the rest)"
        HIDE = "hide", "hide"

    rule = models.ForeignKey(QueryRule, on_delete=models.CASCADE, related_name="products")
    product_key = models.CharField("product", max_length=64)
    action = models.CharField(max_length=8, choices=Action.choices, default=Action.PIN)
    position = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="For a pin: 1 is the first place shown."
    )

    class Meta:
        ordering = ["rule", "position", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["rule", "product_key"], name="shopguide_ruleproduct_unique"),
            models.CheckConstraint(
                condition=models.Q(action="pin", position__gte=1) | (~models.Q(action="pin") & models.Q(position=None)),
                name="shopguide_ruleproduct_pin_has_position",
            ),
        ]

    def __str__(self):
        where = f" at {self.position}" if self.action == self.Action.PIN else ""
        return f"{self.action} {self.product_key}{where}"


class DailySearches(models.Model):
    """How often a normalised query was searched on a day (the shop's ``record_search``) and
    how often shopguide's strip was shown for it, counted as they happen."""

    day = models.DateField()
    query_norm = models.CharField("normalised query", max_length=256)
    searches = models.PositiveIntegerField(default=0)
    no_results = models.PositiveIntegerField(default=0, help_text="Searches the shop's search answered with nothing.")
    strips = models.PositiveIntegerField(default=0, help_text="Strips rendered for the query.")
    unmatched_strips = models.PositiveIntegerField(
        default=0, help_text="Strips for which nothing matched the query (the shop's popular products stood in)."
    )

    class Meta:
        verbose_name_plural = "daily searches"
        constraints = [models.UniqueConstraint(fields=["day", "query_norm"], name="shopguide_dailysearches_unique")]


class DailyEvents(models.Model):
    """A day's shopper events for a normalised query, summed from ``SearchEvent`` by
    ``insights.roll_up``: each shopper counts once per query and product, so replaying an
    event adds nothing. ``model_version``: the version whose strip the shopper saw (None
    when they saw none)."""

    day = models.DateField()
    query_norm = models.CharField("normalised query", max_length=256)
    model_version = models.PositiveIntegerField(null=True)
    views = models.PositiveIntegerField(default=0, help_text="Shoppers who were shown the strip.")
    clicked_views = models.PositiveIntegerField(default=0, help_text="Of them, those who clicked in it.")
    clicks = models.PositiveIntegerField(default=0, help_text="Products clicked in the strip.")
    positioned_clicks = models.PositiveIntegerField(default=0)
    click_positions = models.PositiveBigIntegerField(default=0, help_text="Sum of the positioned clicks' places.")
    carts = models.PositiveIntegerField(default=0, help_text="Products put in a cart after the search.")
    purchases = models.PositiveIntegerField(default=0, help_text="Products bought after the search.")

    class Meta:
        verbose_name_plural = "daily events"
        indexes = [models.Index(fields=["day"])]


class RolledUpDay(models.Model):
    """When a day's ``DailyEvents`` were last summed; a day with none is summed when asked for."""

    day = models.DateField(primary_key=True)
    rolled_up_at = models.DateTimeField()


class OnlineComparison(models.Model):
    """A candidate version compared with the serving one on shoppers: a share of them
    (``ONLINE_SHARE``) see both versions' rankings interleaved in the strip (team draft), and
    their clicks say which version they prefer. See ``online``."""

    class Status(models.TextChoices):
        RUNNING = "running", "running"
        WON = "won", "won"
        LOST = "lost", "lost"
        STOPPED = "stopped", "stopped"

    candidate = models.ForeignKey(RecommenderModel, on_delete=models.CASCADE, related_name="comparisons")
    serving = models.ForeignKey(RecommenderModel, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.RUNNING)
    activate_if_better = models.BooleanField(
        default=False, help_text="Activate the candidate once it wins significantly (AUTO_ACTIVATE = online)."
    )
    verdict = models.TextField(blank=True)
    started_at = models.DateTimeField(auto_now_add=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["status"], condition=models.Q(status="running"), name="shopguide_one_running_comparison"
            ),
        ]

    def __str__(self):
        return f"v{self.candidate.version} against v{self.serving.version} ({self.status})"


class InterleavedList(models.Model):
    """A strip a shopper was shown during an online comparison: which version contributed
    each product (``teams``: ``{key: "a" or "b"}``, "a" the serving one), what they clicked
    and the outcome so far ("a", "b" or "tie")."""

    comparison = models.ForeignKey(OnlineComparison, on_delete=models.CASCADE, related_name="lists")
    session = models.CharField(max_length=64)
    voter = models.CharField(max_length=64)
    query_norm = models.CharField(max_length=256)
    teams = models.JSONField()
    clicked = models.JSONField(default=list)
    outcome = models.CharField(max_length=4, default="tie")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["comparison", "session", "query_norm"], name="shopguide_interleavedlist_unique"
            ),
        ]
