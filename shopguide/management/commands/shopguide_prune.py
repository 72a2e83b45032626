from django.core.management.base import BaseCommand, CommandError

from shopguide import operations


class Command(BaseCommand):
    help = (
        "Delete the files of old versions: all but the active one, the previous one, the newest one and "
        "the KEEP_VERSIONS newest others. Their rows stay, with their figures, marked pruned."
    )

    def add_arguments(self, parser):
        parser.add_argument("--keep", type=int, help="newest other versions to keep (default KEEP_VERSIONS)")
        parser.add_argument("--dry-run", action="store_true", help="only list what would be pruned")

    def handle(self, *args, keep=None, dry_run=False, **options):
        if keep is not None and keep < 0:
            raise CommandError("--keep must be 0 or more.")
        models = operations.prunable(keep) if dry_run else operations.prune(keep)
        verb = "Would prune" if dry_run else "Pruned"
        versions = ", ".join(f"v{model.version}" for model in models) or "nothing"
        self.stdout.write(f"{verb}: {versions}.")
