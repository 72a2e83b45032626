import time

from django.core.management.base import BaseCommand, CommandError

from catalog.loading import DatasetError, load_dataset


class Command(BaseCommand):
    help = (
        "Load a folder in the shop dataset format (products.csv, optional judgments.csv and "
        "events.csv). Re-running updates rows; a malformed file loads nothing."
    )

    def add_arguments(self, parser):
        parser.add_argument("folder", help="Dataset folder, e.g. catalog/demo_data")

    def handle(self, folder, **options):
        started = time.monotonic()
        progress = self.progress_printer() if options["verbosity"] >= 1 else None
        try:
            report = load_dataset(folder, progress=progress)
        except DatasetError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(self.style.SUCCESS(f"Loaded {folder} in {time.monotonic() - started:.1f}s: {report}"))

    def progress_printer(self):
        """A live counter on a terminal; a line per quarter in logs."""
        interactive = self.stderr.isatty()
        printed = set()

        def progress(stage, done, total):
            percent = 100 * done // max(total, 1)
            if interactive:
                end = "\n" if done >= total else ""
                self.stderr.write(f"\r  {stage}: {done:,}/{total:,} ({percent}%)", ending=end)
                self.stderr.flush()
            elif (stage, percent // 25) not in printed:
                printed.add((stage, percent // 25))
                self.stderr.write(f"  {stage}: {done:,}/{total:,} ({percent}%)")

        return progress
