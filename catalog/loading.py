"""Load a folder in the shop dataset format into the catalogue, all or nothing.

A folder holds ``products.csv`` (``product_id``, ``title``, optional ``description``,
``category``, ``brand``, ``price``) and optionally ``judgments.csv`` (``query``,
``product_id``, ``grade``, optional ``split``) and ``events.csv`` (``query``, ``product_id``,
``event``, optional ``session``, ``timestamp``). Every file is read and checked before anything
is written; any problem is reported as ``file:line: column: what is wrong`` and the database is
left as it was. Loading the same folder again updates rows instead of duplicating them.
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path

from django.db import transaction
from django.utils.text import slugify

from shopguide.catalog_source import get_catalog_source
from shopguide.importing import (
    BATCH_SIZE,
    DatasetError,
    Problem,
    batches,
    check_length,
    read_csv,
    store_events,
    store_judgments,
    validate_events,
    validate_judgments,
)

from .models import Brand, Category, Product

MAX_PRICE = Decimal("99999999.99")


@dataclass
class LoadReport:
    products_created: int = 0
    products_updated: int = 0
    categories: int = 0
    brands: int = 0
    judgments: int = 0
    judgments_merged: int = 0
    events_created: int = 0
    events_skipped: int = 0

    def __str__(self):
        return (
            f"{self.products_created} products created, {self.products_updated} updated, "
            f"{self.categories} categories, {self.brands} brands, {self.judgments} judgments "
            f"({self.judgments_merged} repeated rows averaged in), "
            f"{self.events_created} events stored ({self.events_skipped} already there)"
        )


def parse_price(table, line, text):
    if not text:
        return None
    try:
        price = Decimal(text)
    except InvalidOperation:
        table.problem(line, f"{text!r} is not a number", "price")
        return None
    if not price.is_finite() or price < 0 or price > MAX_PRICE:
        table.problem(line, f"{text!r} must be between 0 and {MAX_PRICE}", "price")
        return None
    return price.quantize(Decimal("0.01"))


def validate_products(path):
    table = read_csv(path, required=["product_id", "title"], optional=["description", "category", "brand", "price"])
    products, first_line = {}, {}
    for line, row in table.rows:
        product_id, title = row["product_id"], row["title"]
        if not product_id:
            table.problem(line, "empty", "product_id")
            continue
        if product_id in first_line:
            table.problem(line, f"duplicate id {product_id!r} (first on line {first_line[product_id]})", "product_id")
            continue
        first_line[product_id] = line
        if not title:
            table.problem(line, "empty", "title")
        ok = all(
            [
                check_length(table, line, "product_id", product_id, 64),
                check_length(table, line, "title", title, 500),
                check_length(table, line, "category", row.get("category", ""), 200),
                check_length(table, line, "brand", row.get("brand", ""), 200),
                check_length(table, line, "description", row.get("description", ""), 100_000),
            ]
        )
        price = parse_price(table, line, row.get("price", ""))
        if ok and title:
            products[product_id] = {
                "title": title,
                "description": row.get("description", ""),
                "category": row.get("category", ""),
                "brand": row.get("brand", ""),
                "price": price,
            }
    return table, products


def unique_slugs(names, model):
    """``{name: slug}`` for new names, avoiding slugs already used by other names."""
    taken = set(model.objects.values_list("slug", flat=True))
    slugs = {}
    for name in names:
        base = slugify(name)[:190] or "item"
        slug, number = base, 1
        while slug in taken:
            number += 1
            slug = f"{base}-{number}"
        taken.add(slug)
        slugs[name] = slug
    return slugs


def ensure_named(model, names):
    """Create the missing rows of a name/slug model; return ``{name: pk}``."""
    names = sorted({name for name in names if name})
    existing = dict(model.objects.filter(name__in=names).values_list("name", "pk"))
    missing = [name for name in names if name not in existing]
    slugs = unique_slugs(missing, model)
    model.objects.bulk_create([model(name=name, slug=slugs[name]) for name in missing])
    return dict(model.objects.filter(name__in=names).values_list("name", "pk"))


def load_dataset(folder, progress=None):
    """Validate and load a dataset folder; return a ``LoadReport`` or raise ``DatasetError``.

    ``progress(stage, done, total)`` is called as the load advances.
    """
    folder = Path(folder)
    products_path = folder / "products.csv"
    if not products_path.is_file():
        raise DatasetError([Problem(str(folder), None, "no products.csv in this folder")])
    progress = progress or (lambda stage, done, total: None)
    loaded_at = datetime.now(UTC)

    products_table, products = validate_products(products_path)
    tables = [products_table]
    known_ids = set(products) | set(Product.objects.values_list("external_id", flat=True))
    judgments = events = ()
    if (folder / "judgments.csv").is_file():
        table, judgments = validate_judgments(folder / "judgments.csv", known_ids)
        tables.append(table)
    if (folder / "events.csv").is_file():
        table, events = validate_events(folder / "events.csv", known_ids, loaded_at)
        tables.append(table)
    problems = [problem for table in tables for problem in table.problems]
    if problems:
        raise DatasetError(problems)

    report = LoadReport()
    with transaction.atomic():
        categories = ensure_named(Category, (row["category"] for row in products.values()))
        brands = ensure_named(Brand, (row["brand"] for row in products.values()))
        report.categories, report.brands = len(categories), len(brands)
        existing = set(Product.objects.filter(external_id__in=list(products)).values_list("external_id", flat=True))
        report.products_updated = len(existing)
        report.products_created = len(products) - len(existing)
        rows = [
            Product(
                external_id=product_id,
                title=row["title"],
                description=row["description"],
                category_id=categories.get(row["category"]),
                brand_id=brands.get(row["brand"]),
                price=row["price"],
            )
            for product_id, row in products.items()
        ]
        for done, batch in enumerate(batches(rows), start=1):
            Product.objects.bulk_create(
                batch,
                update_conflicts=True,
                unique_fields=["external_id"],
                update_fields=["title", "description", "category", "brand", "price", "updated_at"],
            )
            progress("products", min(done * BATCH_SIZE, len(rows)), len(rows))

        keys = get_catalog_source().keys_for_external_ids({row["product_id"] for row in (*judgments, *events)})
        store_judgments(judgments, keys, progress=progress)
        report.judgments = len(judgments)
        report.judgments_merged = sum(row["merged"] for row in judgments)
        report.events_created = store_events(events, keys, progress=progress)
        report.events_skipped = len(events) - report.events_created
    return report
