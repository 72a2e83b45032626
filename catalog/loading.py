"""Load a folder in the shop dataset format into the catalogue, all or nothing.

A folder holds ``products.csv`` (``product_id``, ``title``, optional ``description``,
``category``, ``brand``, ``price``) and optionally ``judgments.csv`` (``query``,
``product_id``, ``grade``, optional ``split``) and ``events.csv`` (``query``, ``product_id``,
``event``, optional ``session``, ``timestamp``). Every file is read and checked before anything
is written; any problem is reported as ``file:line: column: what is wrong`` and the database is
left as it was. Loading the same folder again updates rows instead of duplicating them.
"""

import csv
import hashlib
import io
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path

from django.db import transaction
from django.utils.text import slugify

from shopguide.catalog_source import get_catalog_source
from shopguide.ml.text import normalize_query
from shopguide.models import Judgment, SearchEvent

from .models import Brand, Category, Product

BATCH_SIZE = 2000
MAX_PROBLEMS_SHOWN = 20
MAX_PRICE = Decimal("99999999.99")
csv.field_size_limit(64 * 1024 * 1024)


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    message: str
    column: str = ""

    def __str__(self):
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.column}: {self.message}" if self.column else f"{where}: {self.message}"


class DatasetError(Exception):
    """A dataset folder that cannot be loaded; ``problems`` lists every reason found."""

    def __init__(self, problems):
        self.problems = list(problems)
        shown = "\n".join(str(problem) for problem in self.problems[:MAX_PROBLEMS_SHOWN])
        more = len(self.problems) - MAX_PROBLEMS_SHOWN
        if more > 0:
            shown += f"\n... and {more} more problem(s)"
        super().__init__(f"Nothing was loaded: {len(self.problems)} problem(s) found.\n{shown}")


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


@dataclass
class CsvFile:
    """Rows of one CSV file as ``(line number, {column: value})``, plus problems found."""

    name: str
    rows: list = field(default_factory=list)
    problems: list = field(default_factory=list)

    def problem(self, line, message, column=""):
        self.problems.append(Problem(self.name, line, message, column))


def read_csv(path, required, optional=()):
    """Read ``path`` strictly: UTF-8, the required columns present, every row complete."""
    table = CsvFile(path.name)
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        table.problem(line, f"not valid UTF-8 (byte 0x{data[exc.start]:02x}); save the file as UTF-8")
        return table
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = [name.strip() for name in next(reader)]
    except StopIteration:
        table.problem(1, "the file is empty; expected a header row")
        return table
    except csv.Error as exc:
        table.problem(1, f"malformed CSV: {exc}")
        return table
    missing = [name for name in required if name not in header]
    if missing:
        table.problem(1, f"missing column(s) {', '.join(missing)}; the header is {', '.join(header)}")
        return table
    known = [name for name in (*required, *optional) if name in header]
    positions = {name: header.index(name) for name in known}
    line = reader.line_num
    try:
        for values in reader:
            start, line = line + 1, reader.line_num
            if not values:
                continue
            if len(values) != len(header):
                table.problem(start, f"{len(values)} fields, the header has {len(header)}")
                continue
            table.rows.append((start, {name: values[index].strip() for name, index in positions.items()}))
    except csv.Error as exc:
        table.problem(line + 1, f"malformed CSV: {exc}")
    return table


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


def check_length(table, line, column, text, limit):
    if len(text) > limit:
        table.problem(line, f"{len(text)} characters; at most {limit} are allowed", column)
        return False
    return True


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
        ok = all([
            check_length(table, line, "product_id", product_id, 64),
            check_length(table, line, "title", title, 500),
            check_length(table, line, "category", row.get("category", ""), 200),
            check_length(table, line, "brand", row.get("brand", ""), 200),
            check_length(table, line, "description", row.get("description", ""), 100_000),
        ])
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


def validate_query(table, line, query):
    if not query:
        table.problem(line, "empty", "query")
        return None
    if not check_length(table, line, "query", query, 256):
        return None
    normalized = normalize_query(query)
    if not normalized:
        table.problem(line, "has no searchable characters", "query")
        return None
    return normalized


def validate_judgments(path, known_ids):
    """Check judgments; several rows for one (query, product) are merged into their mean grade."""
    table = read_csv(path, required=["query", "product_id", "grade"], optional=["split"])
    judgments = {}
    for line, row in table.rows:
        query_norm = validate_query(table, line, row["query"])
        product_id = row["product_id"]
        if product_id not in known_ids:
            table.problem(line, f"unknown product {product_id!r}", "product_id")
        try:
            grade = float(row["grade"])
        except ValueError:
            table.problem(line, f"{row['grade']!r} is not a number", "grade")
            continue
        if not math.isfinite(grade) or grade < 0:
            table.problem(line, f"{row['grade']!r} must be a number >= 0", "grade")
            continue
        split = row.get("split", "")
        if not check_length(table, line, "split", split, 16) or query_norm is None or product_id not in known_ids:
            continue
        judgment = judgments.setdefault((query_norm, product_id), {
            "query": row["query"], "query_norm": query_norm, "product_id": product_id, "grades": [], "split": split,
        })
        judgment["grades"].append(grade)
    for judgment in judgments.values():
        grades = judgment.pop("grades")
        judgment["grade"] = sum(grades) / len(grades)
        judgment["merged"] = len(grades) - 1
    return table, list(judgments.values())


def parse_timestamp(table, line, text):
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        table.problem(line, f"{text!r} is not an ISO 8601 date and time", "timestamp")
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def validate_events(path, known_ids, loaded_at):
    table = read_csv(path, required=["query", "product_id", "event"], optional=["session", "timestamp"])
    kinds = set(SearchEvent.Kind.values)
    events, seen = [], {}
    for line, row in table.rows:
        query_norm = validate_query(table, line, row["query"])
        product_id, kind, session = row["product_id"], row["event"], row.get("session", "")
        if product_id not in known_ids:
            table.problem(line, f"unknown product {product_id!r}", "product_id")
        if kind not in kinds:
            table.problem(line, f"{kind!r} is not one of {', '.join(sorted(kinds))}", "event")
        moment = parse_timestamp(table, line, row["timestamp"]) if row.get("timestamp") else loaded_at
        valid = check_length(table, line, "session", session, 64)
        if not valid or query_norm is None or product_id not in known_ids or kind not in kinds or moment is None:
            continue
        # Identical rows are distinct events (a shopper can click twice): number them.
        identity = (row["query"], product_id, kind, session, row.get("timestamp", ""))
        seen[identity] = seen.get(identity, 0) + 1
        import_key = hashlib.sha256(repr((*identity, seen[identity])).encode()).hexdigest()
        events.append({
            "query": row["query"], "query_norm": query_norm, "product_id": product_id, "event": kind,
            "session": session, "created_at": moment, "import_key": import_key,
        })
    return table, events


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


def batches(items, size=BATCH_SIZE):
    for start in range(0, len(items), size):
        yield items[start:start + size]


def load_dataset(folder, progress=None):
    """Validate and load a dataset folder; return a ``LoadReport`` or raise ``DatasetError``.

    ``progress(stage, done, total)`` is called as the load advances.
    """
    folder = Path(folder)
    products_path = folder / "products.csv"
    if not products_path.is_file():
        raise DatasetError([Problem(str(folder), None, "no products.csv in this folder")])
    progress = progress or (lambda stage, done, total: None)
    loaded_at = datetime.now(timezone.utc)

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
                external_id=product_id, title=row["title"], description=row["description"],
                category_id=categories.get(row["category"]), brand_id=brands.get(row["brand"]), price=row["price"],
            )
            for product_id, row in products.items()
        ]
        for done, batch in enumerate(batches(rows), start=1):
            Product.objects.bulk_create(
                batch, update_conflicts=True, unique_fields=["external_id"],
                update_fields=["title", "description", "category", "brand", "price", "updated_at"],
            )
            progress("products", min(done * BATCH_SIZE, len(rows)), len(rows))

        if judgments or events:
            source = get_catalog_source()
            wanted = {row["product_id"] for row in (*judgments, *events)}
            keys = {
                external_id: source.key_for_pk(pk)
                for external_id, pk in Product.objects.filter(external_id__in=wanted).values_list("external_id", "pk")
            }
        for done, batch in enumerate(batches(judgments), start=1):
            Judgment.objects.bulk_create(
                [
                    Judgment(
                        query=row["query"], query_norm=row["query_norm"], product_key=keys[row["product_id"]],
                        grade=row["grade"], split=row["split"], source=Judgment.Source.IMPORTED,
                    )
                    for row in batch
                ],
                update_conflicts=True, unique_fields=["query_norm", "product_key"],
                update_fields=["query", "grade", "split", "source", "updated_at"],
            )
            progress("judgments", min(done * BATCH_SIZE, len(judgments)), len(judgments))
        report.judgments = len(judgments)
        report.judgments_merged = sum(row["merged"] for row in judgments)

        before = SearchEvent.objects.count()
        for done, batch in enumerate(batches(events), start=1):
            SearchEvent.objects.bulk_create(
                [
                    SearchEvent(
                        query=row["query"], query_norm=row["query_norm"], product_key=keys[row["product_id"]],
                        event=row["event"], session=row["session"], created_at=row["created_at"],
                        import_key=row["import_key"],
                    )
                    for row in batch
                ],
                ignore_conflicts=True,
            )
            progress("events", min(done * BATCH_SIZE, len(events)), len(events))
        report.events_created = SearchEvent.objects.count() - before
        report.events_skipped = len(events) - report.events_created
    return report
