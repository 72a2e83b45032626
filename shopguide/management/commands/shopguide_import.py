from django.core.management.base import BaseCommand, CommandError

from shopguide.importing import DatasetError, import_events, import_judgments

from .shopguide_train import ProgressBars


class Command(BaseCommand):
    help = (
        "Import judgments or shopper events from a CSV file in the shop dataset format, naming products "
        "by their id in the shop (EXTERNAL_ID_FIELD). All rows or none; --skip-unknown stores all but the "
        "rows of products the shop does not have, and lists those."
    )

    def add_arguments(self, parser):
        parser.add_argument("kind", choices=["judgments", "events"], help="what the file holds")
        parser.add_argument(
            "file",
            help="judgments.csv (query, product_id, grade[, split]) or events.csv "
            "(query, product_id, event[, session, timestamp])",
        )
        parser.add_argument(
            "--skip-unknown", action="store_true", help="import the rest when some rows name unknown products"
        )

    def handle(self, kind, file, **options):
        bars = ProgressBars(self.stderr._out)
        try:
            if kind == "judgments":
                report = import_judgments(file, options["skip_unknown"])
            else:
                report = import_events(file, options["skip_unknown"], progress=bars)
        except (DatasetError, OSError) as exc:
            raise CommandError(str(exc)) from exc
        finally:
            bars.close()
        for problem in report.skipped:
            self.stderr.write(f"skipped {problem}")
        self.stdout.write(self.style.SUCCESS(f"{kind.capitalize()}: {report}."))
