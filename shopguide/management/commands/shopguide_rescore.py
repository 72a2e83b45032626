from django.core.management.base import BaseCommand, CommandError

from shopguide import operations
from shopguide.models import RecommenderModel
from shopguide.versions import active_model

from .shopguide_train import ProgressBars


class Command(BaseCommand):
    help = "Encode every available product with a version and swap the serving vectors at once."

    def add_arguments(self, parser):
        parser.add_argument("--model-version", type=int, help="version number to use (default: the active one)")
        parser.add_argument("--activate", action="store_true", help="make that version serve when done")
        parser.add_argument("--sync", action="store_true", help="rescore here instead of on the Celery workers")
        parser.add_argument(
            "--encode-all",
            action="store_true",
            help="encode every product again, even those whose vector the training run stored",
        )

    def handle(self, *args, **options):
        if options["model_version"] is None:
            model = active_model()
            if model is None:
                raise CommandError("No version is active: pass --model-version N (see the admin's list of versions).")
        else:
            model = RecommenderModel.objects.filter(version=options["model_version"]).first()
            if model is None:
                raise CommandError(f"There is no version {options['model_version']}.")
        reuse_vectors = not options["encode_all"]
        if not options["sync"]:
            try:
                result = operations.rescore(model, activate=options["activate"], reuse_vectors=reuse_vectors)
            except operations.OperationError as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(f"Rescore with version {model.version} queued (task {result.id}).")
            return
        bars = ProgressBars(self.stderr._out)
        try:
            job = operations.rescore_here(
                model, activate=options["activate"], progress=bars, reuse_vectors=reuse_vectors
            )
        except operations.OperationError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            bars.close()
        self.stdout.write(self.style.SUCCESS(f"{job.products} products rescored with version {model.version}."))
