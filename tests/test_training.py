"""Training, versions and evaluation through the management commands, on real PostgreSQL."""

import json
import shutil

import pytest
from django.core.management import CommandError, call_command

from catalog.models import Product
from shopguide import operations
from shopguide.feedback import verified_grades
from shopguide.ml.version_files import folder_checksum
from shopguide.models import Judgment, ProductVector, RecommenderModel, SearchEvent, TrainingRun
from shopguide.training import TrainingError, execute_run, split_queries
from shopguide.versions import ActivationError, activate, active_model, previous_model
from tests.slang_shop import PRODUCTS, SLANG


@pytest.fixture
def shop(db, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    products = {pid: Product.objects.create(external_id=pid, title=title) for pid, title in PRODUCTS.items()}
    for word, pid in SLANG.items():
        Judgment.objects.create(query=word, product_key=str(products[pid].pk), grade=2, source="imported")
    return products


def write_judgments(path, rows):
    path.write_text("query,product_id,grade\n" + "".join(f"{q},{p},{g}\n" for q, p, g in rows))
    return path


def train(*args):
    call_command("shopguide_train", "--sync", "--holdout", "0.25", *args, verbosity=0)
    return RecommenderModel.objects.latest("version")


@pytest.mark.django_db
def test_train_sync_stores_a_version_then_evaluate_sees_it(shop, tmp_path, capsys):
    model = train("--epochs", "6", "--no-reranker", "--activate")

    assert model.version == 1 and model.is_active
    assert model.checksum == folder_checksum(model.folder)
    # Its files are in a private folder beside MEDIA_ROOT, none inside it where they would be served.
    assert model.folder == tmp_path / "shopguide-versions" / model.artifact_path
    assert not any((tmp_path / "media").rglob("*.safetensors"))
    assert model.data_counts["heldout_queries"] == 2 and model.data_counts["train_queries"] == 6
    assert model.ndcg("after", "dense") is not None and model.ndcg("before", "dense") is not None
    run = TrainingRun.objects.get()
    assert run.status == "succeeded" and run.model == model and run.progress == 100
    assert run.loss_curve["training retriever"]

    judgments = write_judgments(tmp_path / "judgments.csv", [(w, p, 2) for w, p in SLANG.items()])
    capsys.readouterr()
    call_command("shopguide_evaluate", "--judgments", str(judgments), "--json")
    results = json.loads(capsys.readouterr().out)
    assert list(results) == [
        "postgres_fts",
        "bm25",
        "bm25_products",
        "zero_shot",
        "fine_tuned",
        "hybrid",
        "hybrid_reranked",
        "hybrid_torch",
    ]
    assert results["postgres_fts"]["ndcg@10"] == 0.0  # nobody's texts contain the slang
    assert results["fine_tuned"]["ndcg@10"] > results["zero_shot"]["ndcg@10"] + 0.2
    assert results["fine_tuned"]["queries"] == 8
    assert results["hybrid_reranked"] == {"skipped": "version 1 has no reranker"}
    # served through the ONNX export; torch's queries rank alike
    assert results["hybrid_torch"]["queries"] == 8
    assert abs(results["hybrid_torch"]["ndcg@10"] - results["hybrid"]["ndcg@10"]) <= 0.002


def test_event_rule_keeps_the_strongest_event(shop, settings):
    for kind in ["impression", "click", "purchase", "impression"]:
        SearchEvent.objects.create(query="Hose", product_key="1", event=kind, created_at="2026-10-01T00:00Z")
    SearchEvent.objects.create(query="hose", product_key="2", event="impression", created_at="2026-10-01T00:00Z")
    SearchEvent.objects.create(query="hose", product_key="3", event="add_to_cart", created_at="2026-10-01T00:00Z")
    settings.SHOPGUIDE = {**settings.SHOPGUIDE, "MIN_SHOPPERS": 1}  # one voter here (see test_shopper_events)
    assert verified_grades() == {"hose": {"1": 3.0, "2": 0.0, "3": 2.0}}


def test_split_is_stable_and_holds_out_enough():
    queries = [f"query {n}" for n in range(100)]
    train, heldout = split_queries(queries, 0.1)
    assert len(heldout) == 10 and not set(train) & set(heldout)
    assert split_queries(list(reversed(queries)), 0.1) == (train, heldout)
    assert len(split_queries(queries[:20], 0.1)[1]) == 4  # small shops: at least a fifth, up to 10


@pytest.fixture
def two_versions(shop):
    """Version 1 trained for real; version 2 a copy of its files (as a retrain would leave)."""
    first = train("--epochs", "1", "--max-pairs", "8", "--no-reranker")
    folder = first.folder.parent / "copy"
    shutil.copytree(first.folder, folder)
    second = RecommenderModel.objects.create(
        version=2,
        base_model=first.base_model,
        artifact_path=first.artifact_path.rsplit("/", 1)[0] + "/copy",
        checksum=folder_checksum(folder),
    )
    return first, second


def test_rolling_back_rescores_with_the_previous_version_then_serves_it(two_versions, eager_celery):
    first, second = two_versions
    operations.activate(first)
    operations.activate(second)
    assert active_model() == second and previous_model() == first
    assert set(ProductVector.objects.values_list("model", flat=True)) == {second.pk}
    assert operations.roll_back() == first
    assert list(RecommenderModel.objects.filter(is_active=True)) == [first]
    assert set(ProductVector.objects.values_list("model", flat=True)) == {first.pk}  # its own vectors serve


def test_tampered_artifact_is_refused_and_the_active_version_keeps_serving(two_versions):
    first, second = two_versions
    activate(first)
    with (second.folder / "encoder" / "config.json").open("a") as file:
        file.write(" ")
    with pytest.raises(ActivationError, match="changed after training"):
        activate(second)
    assert active_model() == first
    shutil.rmtree(second.folder)
    with pytest.raises(ActivationError, match="is missing"):
        activate(second)
    assert active_model() == first


def test_no_earlier_version_to_roll_back_to(shop):
    with pytest.raises(operations.OperationError, match="no earlier active version"):
        operations.roll_back()


def test_a_second_run_is_refused_while_one_runs(shop):
    TrainingRun.objects.create(status="running")
    second = TrainingRun.objects.create()
    with pytest.raises(TrainingError, match="is still running"):
        execute_run(second)
    second.refresh_from_db()
    assert second.status == "failed" and "still running" in second.error
    assert not RecommenderModel.objects.exists()


def test_a_queued_run_that_no_worker_takes_can_be_cancelled_from_the_command_line(shop, capsys):
    run = TrainingRun.objects.create()  # queued, its message lost (a broker nobody listens to)
    with pytest.raises(CommandError, match=r"manage.py shopguide_train --cancel"):
        call_command("shopguide_train", "--sync")
    call_command("shopguide_train", "--cancel")
    assert f"Training run #{run.pk} cancelled." in capsys.readouterr().out
    run.refresh_from_db()
    assert run.status == "cancelled"
    with pytest.raises(CommandError, match="No training run is queued or running"):
        call_command("shopguide_train", "--cancel")


def test_cold_start_trains_from_the_catalogue(shop):
    Judgment.objects.all().delete()
    model = train("--epochs", "1", "--max-pairs", "16", "--no-reranker")
    assert model.hyperparameters["cold_start"] is True
    assert model.data_counts["pairs"] > 0


def test_train_without_sync_enqueues_a_run(shop, eager_celery):
    call_command("shopguide_train", "--epochs", "1", "--max-pairs", "8", "--no-reranker", verbosity=0)
    run = TrainingRun.objects.get()
    assert run.status == "succeeded" and run.task_id
    assert run.options == {"holdout_share": 0.1, "epochs": 1, "max_pairs": 8, "reranker": False}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--holdout", "1.5"], "--holdout must be between 0 and 1"),
        (["--epochs", "0"], "--epochs must be at least 1"),
        (["--activate"], "--activate needs --sync"),
    ],
)
def test_bad_train_options_are_refused(shop, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("shopguide_train", *args)
    assert not TrainingRun.objects.exists()


def test_evaluate_reads_only_the_chosen_split_and_skips_vanished_products(shop, tmp_path, capsys):
    train("--epochs", "1", "--max-pairs", "8", "--no-reranker", "--activate")
    path = tmp_path / "judgments.csv"
    path.write_text(
        "query,product_id,grade,split\n"
        "zorblax,p1,2,test\nquimbo,gone-since,1,test\n"  # a product sold off since the export
        "vantrel,also-gone,1,train\nflenty,p3,x,train\n"  # other splits are not read, bad rows included
    )
    capsys.readouterr()
    call_command("shopguide_evaluate", "--judgments", str(path), "--split", "test", "--json")
    out, err = capsys.readouterr()
    assert json.loads(out)["bm25"]["queries"] == 1
    assert "Skipped 1 judgment(s) of products the catalogue no longer has." in err
    with pytest.raises(CommandError, match=r"judgments.csv:5: grade: 'x' is not a number"):
        call_command("shopguide_evaluate", "--judgments", str(path))


def test_import_is_all_or_nothing_unless_unknown_products_are_skipped(shop, tmp_path, capsys):
    Judgment.objects.all().delete()
    judgments = write_judgments(tmp_path / "judgments.csv", [("zorblax", "p1", 2), ("quimbo", "nope", 1)])
    with pytest.raises(CommandError, match=r"judgments.csv:3: product_id: unknown product 'nope'"):
        call_command("shopguide_import", "judgments", str(judgments))
    assert not Judgment.objects.exists()
    call_command("shopguide_import", "judgments", str(judgments), "--skip-unknown")
    out, err = capsys.readouterr()
    assert "Judgments: 1 stored, 1 skipped" in out and "skipped judgments.csv:3: product_id: unknown product" in err
    assert list(Judgment.objects.values_list("query_norm", flat=True)) == ["zorblax"]

    events = tmp_path / "events.csv"
    events.write_text(
        "query,product_id,event,session\nzorblax,p1,click,s1\nzorblax,p1,click,s1\nquimbo,nope,purchase,s2\n"
    )
    with pytest.raises(CommandError, match=r"events.csv:4: product_id: unknown product 'nope'"):
        call_command("shopguide_import", "events", str(events))
    assert not SearchEvent.objects.exists()
    call_command("shopguide_import", "events", str(events), "--skip-unknown")
    call_command("shopguide_import", "events", str(events), "--skip-unknown")  # each row once
    assert "Events: 0 stored, 2 already there, 1 skipped" in capsys.readouterr().out
    assert SearchEvent.objects.filter(query_norm="zorblax", event="click").count() == 2
    assert SearchEvent.objects.values("voter").distinct().count() == 1  # one session, one voter


def test_scheduled_retraining_is_off_by_default_and_skips_busy_times(shop, settings, eager_celery):
    from shopguide.tasks import beat_schedule, scheduled_train

    assert "shopguide-retrain" not in beat_schedule()
    settings.SHOPGUIDE = {**settings.SHOPGUIDE, "RETRAIN_EVERY_HOURS": 6}
    assert beat_schedule()["shopguide-retrain"] == {"task": "shopguide.scheduled_train", "schedule": 21600.0}
    TrainingRun.objects.create(status="running")
    assert scheduled_train() is None
    assert TrainingRun.objects.count() == 1


def test_celery_beat_of_any_celery_app_runs_the_schedule(settings, tmp_path):
    from celery import Celery, signals
    from celery.beat import Service

    def beat_entries():
        app = Celery("host_shop")  # a shop's own app: nothing of the demo's config/celery.py
        service = Service(app=app, schedule_filename=str(tmp_path / f"beat-{len(list(tmp_path.iterdir()))}"))
        signals.beat_init.send(sender=service)  # what `celery beat` sends once it has its scheduler
        return service.scheduler.schedule

    assert "shopguide-retrain" not in beat_entries()
    settings.SHOPGUIDE = {**settings.SHOPGUIDE, "RETRAIN_EVERY_HOURS": 6}
    entry = beat_entries()["shopguide-retrain"]
    assert entry.task == "shopguide.scheduled_train" and entry.schedule.run_every.total_seconds() == 21600


def test_old_versions_are_pruned_and_their_figures_kept(shop, tmp_path, capsys):
    def version(number, active=False):
        folder = f"shopguide/models/v{number}"
        (tmp_path / "media" / folder).mkdir(parents=True)
        (tmp_path / "media" / folder / "weights").write_text("x")
        return RecommenderModel.objects.create(
            version=number, base_model="m", artifact_path=folder, checksum="c", is_active=active, metrics_after={"n": 1}
        )

    old, previous, kept, active, newest = version(1), version(2), version(3), version(4, active=True), version(5)
    RecommenderModel.objects.filter(pk=previous.pk).update(activated_at="2026-11-01T00:00Z")  # served before
    call_command("shopguide_prune", "--keep", "1", "--dry-run")
    assert capsys.readouterr().out == "Would prune: v1.\n" and old.folder.exists()
    call_command("shopguide_prune", "--keep", "0")
    assert capsys.readouterr().out == "Pruned: v3, v1.\n"
    assert not old.folder.exists() and not kept.folder.exists()
    assert all(model.folder.exists() for model in (previous, active, newest))
    old.refresh_from_db()
    assert old.status == "pruned" and old.metrics_after == {"n": 1}
    with pytest.raises(operations.OperationError, match="Version 1 cannot serve: its files were pruned"):
        operations.activate(old)
