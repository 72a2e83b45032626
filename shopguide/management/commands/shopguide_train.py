import argparse

from django.core.management.base import BaseCommand, CommandError
from tqdm import tqdm

from shopguide import operations
from shopguide.models import RecommenderModel


class ProgressBars:
    """One tqdm bar per stage on stderr, with the latest loss while training."""

    def __init__(self, stream):
        self.stream, self.bar, self.stage = stream, None, None

    def __call__(self, stage, done, total, loss=None):
        if stage != self.stage:
            self.close()
            self.stage = stage
            self.bar = tqdm(
                total=total,
                desc=stage,
                file=self.stream,
                unit="step" if loss is not None else "item",
                mininterval=0.2 if self.stream.isatty() else 15,
            )
        self.bar.update(done - self.bar.n)
        if loss is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    def close(self):
        if self.bar:
            self.bar.close()


class Command(BaseCommand):
    help = "Fine-tune a new recommender version on the shop's catalogue, judgments and events."

    def add_arguments(self, parser):
        parser.add_argument(
            "--sync", action="store_true", help="train here, with progress bars, instead of on a Celery worker"
        )
        parser.add_argument("--epochs", type=int, help="passes over the training pairs (default 1)")
        parser.add_argument("--max-pairs", type=int, help="cap on (query, product) training pairs (default 36000)")
        parser.add_argument(
            "--reranker",
            action=argparse.BooleanOptionalAction,
            default=None,
            help="train a cross-encoder reranker too (default: yes)",
        )
        parser.add_argument("--holdout", type=float, default=0.1, help="share of queries held out for evaluation")
        parser.add_argument(
            "--unless-trained",
            action="store_true",
            help="do nothing when a version already exists (the demo's first run)",
        )
        parser.add_argument(
            "--activate",
            action="store_true",
            help="with --sync: rescore the catalogue with the new version and make it serve",
        )
        parser.add_argument(
            "--cancel", action="store_true", help="cancel the queued or running training run instead (see the admin)"
        )

    def handle(self, *args, **options):
        if options["cancel"]:
            run = operations.training_in_progress()
            if run is None or not operations.cancel(run):
                raise CommandError("No training run is queued or running.")
            self.stdout.write(f"Training run #{run.pk} cancelled.")
            return
        if not 0 < options["holdout"] < 1:
            raise CommandError("--holdout must be between 0 and 1, e.g. 0.1.")
        for name in ("epochs", "max_pairs"):
            if options[name] is not None and options[name] < 1:
                raise CommandError(f"--{name.replace('_', '-')} must be at least 1.")
        if options["unless_trained"] and RecommenderModel.objects.exists():
            self.stdout.write("A trained version exists; nothing to do.")
            return
        run_options = {"holdout_share": options["holdout"]}
        run_options.update(
            {name: options[name] for name in ("epochs", "max_pairs", "reranker") if options[name] is not None}
        )
        if not options["sync"]:
            if options["activate"]:
                raise CommandError("--activate needs --sync; activate queued versions from the admin.")
            try:
                run = operations.train(run_options)
            except operations.QueueUnavailable as exc:
                raise CommandError(f"{exc} (or train here with --sync)") from exc
            except operations.OperationError as exc:
                raise CommandError(str(exc)) from exc
            self.stdout.write(f"Training run #{run.pk} queued (task {run.task_id}); follow it in the admin.")
            return

        bars = ProgressBars(self.stderr._out)
        try:
            model = operations.train_here(run_options, echo=bars)
        except operations.OperationError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            bars.close()
        self.stdout.write(self.summary(model))
        if not options["activate"]:
            self.stdout.write(
                f"Version {model.version} is stored, not serving: activate it from the admin, or train with --activate."
            )
        if options["activate"]:
            bars = ProgressBars(self.stderr._out)
            try:
                operations.rescore_here(model, activate=True, progress=bars)
            except operations.OperationError as exc:
                raise CommandError(str(exc)) from exc
            finally:
                bars.close()
            self.stdout.write(self.style.SUCCESS(f"Version {model.version} is now active and serving."))

    def summary(self, model):
        lines = [
            f"Version {model.version} trained ({model.data_counts.get('pairs')} pairs, "
            f"{model.data_counts.get('heldout_queries')} held-out queries)."
        ]
        lines.append(f"{'held-out nDCG@10':<22}{'before':>8}{'after':>8}")
        for strategy in ("dense", "fusion_only", "hybrid", "hybrid_reranked"):
            before, after = model.ndcg("before", strategy), model.ndcg("after", strategy)
            if after is not None:
                lines.append(f"{strategy:<22}{'' if before is None else f'{before:.3f}':>8}{after:>8.3f}")
        lines.append(
            f"reranker blend weight: {model.reranker_weight:g}" + (" (not used)" if not model.reranker_weight else "")
        )
        return "\n".join(lines)
