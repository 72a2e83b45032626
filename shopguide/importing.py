"""Reading the shop dataset format's CSV files strictly, and storing judgments and events.

Every problem is collected as ``file:line: column: what is wrong`` before anything is written,
so a caller can refuse a whole file (or folder) and change nothing.
"""

import csv
import hashlib
import io
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from django.db import transaction

from .catalog_source import get_catalog_source
from .insights import forget_sums
from .ml.text import normalize_query
from .models import Judgment, SearchEvent
from .shoppers import keyed_hash

BATCH_SIZE = 2000
MAX_PROBLEMS_SHOWN = 20
csv.field_size_limit(64 * 1024 * 1024)  # read huge fields, to report them with their line
MAX_FIELD = 100_000  # characters in one field: far more than any product text needs


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
class CsvFile:
    """Rows of one CSV file as ``(line number, {column: value})``, plus problems found."""

    name: str
    rows: list = field(default_factory=list)
    problems: list = field(default_factory=list)

    def problem(self, line, message, column=""):
        self.problems.append(Problem(self.name, line, message, column))


def read_csv(source, required, optional=()):
    """Read a CSV strictly: UTF-8, the required columns present, every row complete.

    ``source`` is a path or an uploaded file (anything with ``name`` and ``read()``).
    """
    if isinstance(source, (str, Path)):
        name, data = Path(source).name, Path(source).read_bytes()
    else:
        name, data = Path(source.name).name, source.read()
    table = CsvFile(name)
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
            oversized = [(header[index], len(value)) for index, value in enumerate(values) if len(value) > MAX_FIELD]
            if oversized:
                column, size = oversized[0]
                table.problem(start, f"{column}: {size:,} characters; a field may have at most {MAX_FIELD:,}")
                continue
            table.rows.append((start, {name: values[index].strip() for name, index in positions.items()}))
    except csv.Error as exc:
        table.problem(line + 1, f"malformed CSV: {exc}")
    return table


def check_length(table, line, column, text, limit):
    if len(text) > limit:
        table.problem(line, f"{len(text)} characters; at most {limit} are allowed", column)
        return False
    return True


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


def validate_judgments(path, known_ids=None, split=None):
    """Check judgments; several rows for one (query, product) are merged into their mean grade.

    ``known_ids``: the product ids that exist; None leaves that check to the caller.
    ``split``: read only the rows of that split (the others are not checked either).
    """
    table = read_csv(path, required=["query", "product_id", "grade"], optional=["split"])
    if split is not None:
        table.rows = [(line, row) for line, row in table.rows if row.get("split", "") == split]
    judgments = {}
    for line, row in table.rows:
        query_norm = validate_query(table, line, row["query"])
        product_id = row["product_id"]
        known = known_ids is None or product_id in known_ids
        if not known:
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
        if not check_length(table, line, "split", split, 16) or query_norm is None or not known:
            continue
        judgment = judgments.setdefault(
            (query_norm, product_id),
            {
                "query": row["query"],
                "query_norm": query_norm,
                "product_id": product_id,
                "grades": [],
                "split": split,
                "line": line,
            },
        )
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
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def validate_events(path, known_ids, loaded_at):
    """Check events; ``known_ids``: the product ids that exist; None leaves that check to the
    caller."""
    table = read_csv(path, required=["query", "product_id", "event"], optional=["session", "timestamp"])
    kinds = set(SearchEvent.Kind.values)
    events, seen = [], {}
    for line, row in table.rows:
        query_norm = validate_query(table, line, row["query"])
        product_id, kind, session = row["product_id"], row["event"], row.get("session", "")
        known = known_ids is None or product_id in known_ids
        if not known:
            table.problem(line, f"unknown product {product_id!r}", "product_id")
        if kind not in kinds:
            table.problem(line, f"{kind!r} is not one of {', '.join(sorted(kinds))}", "event")
        moment = parse_timestamp(table, line, row["timestamp"]) if row.get("timestamp") else loaded_at
        valid = check_length(table, line, "session", session, 64)
        if not valid or query_norm is None or not known or kind not in kinds or moment is None:
            continue
        # Identical rows are distinct events (a shopper can click twice): number them.
        identity = (row["query"], product_id, kind, session, row.get("timestamp", ""))
        seen[identity] = seen.get(identity, 0) + 1
        import_key = hashlib.sha256(repr((*identity, seen[identity])).encode()).hexdigest()
        events.append(
            {
                "line": line,
                "query": row["query"],
                "query_norm": query_norm,
                "product_id": product_id,
                "event": kind,
                "session": session,
                "created_at": moment,
                "import_key": import_key,
            }
        )
    return table, events


def batches(items, size=BATCH_SIZE):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def store_judgments(judgments, keys, source=Judgment.Source.IMPORTED, progress=None):
    """Upsert validated judgments; ``keys`` maps their product ids to product keys."""
    for done, batch in enumerate(batches(judgments), start=1):
        Judgment.objects.bulk_create(
            [
                Judgment(
                    query=row["query"],
                    query_norm=row["query_norm"],
                    product_key=keys[row["product_id"]],
                    grade=row["grade"],
                    split=row["split"],
                    source=source,
                )
                for row in batch
            ],
            update_conflicts=True,
            unique_fields=["query_norm", "product_key"],
            update_fields=["query", "grade", "split", "source", "updated_at"],
        )
        if progress:
            progress("judgments", min(done * BATCH_SIZE, len(judgments)), len(judgments))


def imported_voter(row):
    """An imported event counts as its file's session; a row without one as a voter of its
    own (the file is the shop's own word; see ``shoppers``)."""
    return keyed_hash("import", row["session"]) if row["session"] else keyed_hash("import-row", row["import_key"])


def store_events(events, keys, progress=None):
    """Insert validated events, skipping those already imported; return how many were new."""
    before = SearchEvent.objects.count()
    for done, batch in enumerate(batches(events), start=1):
        SearchEvent.objects.bulk_create(
            [
                SearchEvent(
                    query=row["query"],
                    query_norm=row["query_norm"],
                    product_key=keys[row["product_id"]],
                    event=row["event"],
                    session=row["session"],
                    voter=imported_voter(row),
                    created_at=row["created_at"],
                    import_key=row["import_key"],
                )
                for row in batch
            ],
            ignore_conflicts=True,
        )
        if progress:
            progress("events", min(done * BATCH_SIZE, len(events)), len(events))
    forget_sums(row["created_at"] for row in events)  # the insights of those days are summed again
    return SearchEvent.objects.count() - before


@dataclass
class ImportReport:
    stored: int
    skipped: list  # Problems of the rows left out (unknown products), with their lines
    already_there: int = 0  # events imported before

    def __str__(self):
        text = f"{self.stored} stored"
        if self.already_there:
            text += f", {self.already_there} already there"
        if self.skipped:
            text += f", {len(self.skipped)} skipped (products the shop does not have)"
        return text


def resolve(table, rows, skip_unknown):
    """``(rows naming products of the catalogue, {product id: key}, skipped Problems)``; an
    unknown product is one more problem of ``table`` unless ``skip_unknown``. Any problem
    raises ``DatasetError`` listing them all."""
    keys = get_catalog_source().keys_for_external_ids({row["product_id"] for row in rows})
    unknown = [
        Problem(table.name, row["line"], f"unknown product {row['product_id']!r}", "product_id")
        for row in rows
        if row["product_id"] not in keys
    ]
    if table.problems or (unknown and not skip_unknown):
        raise DatasetError(sorted(table.problems + unknown, key=lambda problem: problem.line or 0))
    return [row for row in rows if row["product_id"] in keys], keys, unknown


def resolve_judgments(source, skip_unknown=False, split=None):
    """Validated judgment rows of a file (those of ``split`` only, when given) whose product
    ids name products of the catalogue, ``{product id: key}`` and the skipped rows'
    ``Problem``s; ``DatasetError`` lists every problem with its line."""
    table, rows = validate_judgments(source, split=split)
    return resolve(table, rows, skip_unknown)


def import_judgments(source, skip_unknown=False):
    """Store the judgments of a file: all or none, or with ``skip_unknown`` all but those of
    products the shop does not have (listed in the report)."""
    rows, keys, skipped = resolve_judgments(source, skip_unknown)
    with transaction.atomic():
        store_judgments(rows, keys)
    return ImportReport(len(rows), skipped)


def import_events(source, skip_unknown=False, progress=None):
    """Store the events of a file (the dataset format's events.csv; each row once, however
    often the file is imported): all or none, or with ``skip_unknown`` all but those of
    products the shop does not have."""
    table, events = validate_events(source, None, datetime.now(UTC))
    events, keys, skipped = resolve(table, events, skip_unknown)
    with transaction.atomic():
        stored = store_events(events, keys, progress)
    return ImportReport(stored, skipped, already_there=len(events) - stored)
