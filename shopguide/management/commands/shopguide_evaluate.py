import json

from django.core.management.base import BaseCommand, CommandError

from shopguide.conf import shopguide_settings
from shopguide.evaluation import STRATEGIES, evaluate_strategies, read_judgments
from shopguide.importing import DatasetError
from shopguide.ml.precision import set_torch_threads

from .shopguide_train import ProgressBars


class Command(BaseCommand):
    help = (
        "Evaluate each retrieval strategy (PostgreSQL full-text search, BM25, zero-shot, the active "
        "fine-tuned version, hybrid, hybrid + reranker) on a judgments file, over the whole catalogue."
    )

    def add_arguments(self, parser):
        parser.add_argument("--judgments", required=True, help="judgments.csv in the shop dataset format")
        parser.add_argument(
            "--split", help="only the judgments of this split (e.g. dev, test); other rows are not read"
        )
        parser.add_argument("--k", type=int, default=10, help="cut-off for nDCG (default 10)")
        parser.add_argument("--json", action="store_true", help="print one JSON object: strategy -> metrics")

    def handle(self, *args, **options):
        if options["k"] < 1:
            raise CommandError("--k must be at least 1.")
        set_torch_threads(shopguide_settings.TORCH_THREADS)
        try:
            qrels, skipped = read_judgments(options["judgments"], options["split"])
        except DatasetError as exc:
            raise CommandError(str(exc)) from exc
        if skipped:
            self.stderr.write(f"Skipped {skipped} judgment(s) of products the catalogue no longer has.")
        bars = ProgressBars(self.stderr._out)
        try:
            results = evaluate_strategies(qrels, k=options["k"], progress=bars)
        finally:
            bars.close()
        if options["json"]:
            self.stdout.write(json.dumps({name: results[name] for name in STRATEGIES}, indent=2))
        else:
            self.stdout.write(format_table(results, options["k"]))


def format_table(results, k):
    columns = [f"ndcg@{k}", f"condensed_ndcg@{k}", "recall@100", "mrr", "queries", "seconds"]
    headers = [f"nDCG@{k}", "condensed", "R@100", "MRR", "queries", "seconds"]
    lines = [f"{'strategy':<18}" + "".join(f"{name:>11}" for name in headers)]
    for name in STRATEGIES:
        metrics = results[name]
        if "skipped" in metrics:
            lines.append(f"{name:<18}  skipped: {metrics['skipped']}")
            continue
        cells = [
            f"{metrics[column]:>11.3f}" if isinstance(metrics[column], float) else f"{metrics[column]:>11}"
            for column in columns
        ]
        lines.append(f"{name:<18}" + "".join(cells))
    return "\n".join(lines)
