"""shopguide's own tables. Products are referred to by key (the host model's primary key as a
string), never by a foreign key, so shopguide works with any product model."""

from django.db import models

from .ml.text import normalize_query


class QueryNormalizingModel(models.Model):
    query = models.CharField(max_length=256)
    query_norm = models.CharField("normalised query", max_length=256, db_index=True, editable=False)

    class Meta:
        abstract = True

    def save(self, *args, **kwargs):
        self.query_norm = normalize_query(self.query)
        super().save(*args, **kwargs)


class Judgment(QueryNormalizingModel):
    """How relevant a product is to a query: a graded label, higher is more relevant."""

    class Source(models.TextChoices):
        MANUAL = "manual", "entered by a merchandiser"
        IMPORTED = "imported", "imported from a file"
        DERIVED = "derived", "derived from shopper events"

    product_key = models.CharField(max_length=64, db_index=True)
    grade = models.FloatField(help_text="0 = irrelevant; higher is more relevant.")
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.MANUAL)
    split = models.CharField(
        max_length=16, blank=True,
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

    product_key = models.CharField(max_length=64, db_index=True)
    event = models.CharField(max_length=16, choices=Kind.choices)
    session = models.CharField(max_length=64, blank=True)
    created_at = models.DateTimeField(db_index=True)
    # Set for imported events so that importing the same file twice stores each event once.
    import_key = models.CharField(max_length=64, null=True, blank=True, unique=True, editable=False)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self):
        return f"{self.event} {self.product_key} for {self.query!r}"
