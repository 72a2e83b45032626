"""The shopguide admin: who may do what, and what each action reports."""

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse

from catalog.models import Product
from shopguide.ml.version_files import folder_checksum
from shopguide.models import Judgment, RecommenderModel, TrainingRun

RETRAIN = "admin:shopguide_recommendermodel_retrain"


@pytest.fixture
def version(db, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    folder = tmp_path / "shopguide" / "models" / "v1"
    folder.mkdir(parents=True)
    (folder / "weights.bin").write_bytes(b"weights")
    return RecommenderModel.objects.create(
        version=1,
        base_model="base",
        artifact_path="shopguide/models/v1",
        checksum=folder_checksum(folder),
        metrics_before={
            "hybrid": {"ndcg@10": 0.3, "recall@100": 0.5, "mrr": 0.25, "queries": 12},
            "serving": {"name": "full-text search", "queries": 12, "ndcg@10": 0.2, "recall@100": 0.4, "mrr": 0.3},
        },
        metrics_after={
            "hybrid": {"ndcg@10": 0.4, "ndcg@10_interval": [0.31, 0.52], "recall@100": 0.6, "mrr": 0.35, "queries": 12},
            "hybrid_reranked": {"skipped": "no reranker"},
            "dense": {"ndcg@10": 0.2, "ndcg@10_interval": None, "recall@100": 0.3, "mrr": 0.1, "queries": 12},
        },
        hyperparameters={"epochs": 1, "pipeline": {"max_pairs": 36000}},
        loss_curve={"retriever": [1.2, 0.9, 0.7]},
        data_counts={"products": 10, "pairs": 20},
    )


@pytest.fixture
def users(db, django_user_model):
    def make(name, **flags):
        user = django_user_model.objects.create_user(name, f"{name}@example.com", "pw", **flags)
        client = Client()
        client.force_login(user)
        return user, client

    return {
        "shopper": make("shopper")[1],
        "clerk": make("clerk", is_staff=True),  # staff without shopguide permissions
        "admin": make("boss", is_staff=True, is_superuser=True)[1],
    }


def test_anonymous_and_non_staff_cannot_retrain(users):
    for client in (Client(), users["shopper"]):
        response = client.post(reverse(RETRAIN))
        assert response.status_code == 302 and "/admin/login/" in response["Location"]
    clerk, client = users["clerk"]
    client.post(reverse(RETRAIN))
    assert not TrainingRun.objects.exists()


def test_staff_with_permission_may_retrain_once_at_a_time(users):
    _, clerk = users["clerk"]
    users["clerk"][0].user_permissions.add(Permission.objects.get(codename="change_recommendermodel"))
    assert clerk.get(reverse(RETRAIN)).status_code == 405
    response = clerk.post(reverse(RETRAIN), follow=True)
    run = TrainingRun.objects.get()
    assert f">#{run.pk}</a> queued." in response.text and run.status == "queued" and run.task_id
    response = clerk.post(reverse(RETRAIN), follow=True)
    assert "already queued or running" in response.text
    assert TrainingRun.objects.count() == 1


def test_progress_endpoint_is_staff_only(users):
    run = TrainingRun.objects.create(status="running", stage="training retriever", progress=42.0)
    url = reverse("admin:shopguide_trainingrun_progress", args=[run.pk])
    assert Client().get(url).status_code == 302
    assert users["shopper"].get(url).status_code == 302
    data = users["admin"].get(url).json()
    assert data == {"status": "running", "stage": "training retriever", "progress": 42.0, "error": "", "version": None}
    page = users["admin"].get(reverse("admin:shopguide_trainingrun_change", args=[run.pk]))
    assert 'class="shopguide-progress"' in page.text and "shopguide/admin_progress.js" in page.text


def test_version_pages_show_metrics_and_loss_chart(users, version):
    listing = users["admin"].get(reverse("admin:shopguide_recommendermodel_changelist"))
    assert "0.300" in listing.text and "0.400" in listing.text and "Retrain now" in listing.text
    detail = users["admin"].get(reverse("admin:shopguide_recommendermodel_change", args=[version.pk]))
    assert "<polyline" in detail.text and "retriever loss" in detail.text and "<meter" in detail.text
    # Figures a merchandiser reads: a table per strategy, before and after, not raw JSON.
    text = detail.text
    assert (
        "<tr><th>hybrid</th><td>0.300 → 0.400<br>"
        '<small title="95% bootstrap interval over the queries">0.310–0.520</small></td>'
        "<td>0.500 → 0.600</td><td>0.250 → 0.350</td><td>12</td></tr>" in text
    )
    assert (
        '<tr><th>dense</th><td>0.200<br><small title="95% bootstrap interval over the queries">too few queries to tell</small>'
        in text
    )
    assert "<tr><th>full-text search (serving then)</th><td>0.200</td>" in text and "hybrid_reranked" not in text
    assert "<tr><th>pairs</th><td>20</td></tr>" in text and '{"hybrid"' not in text
    assert "<details><summary>show</summary>" in text and "&quot;max_pairs&quot;: 36000" in text


def action(client, name, version):
    return client.post(
        reverse("admin:shopguide_recommendermodel_changelist"),
        {"action": name, "_selected_action": [version.pk]},
        follow=True,
    )


def test_activate_refuses_a_tampered_version(users, version):
    (version.folder / "weights.bin").write_bytes(b"changed")
    response = action(users["admin"], "activate_versions", version)
    assert "cannot serve" in response.text and "changed after training" in response.text
    version.refresh_from_db()
    assert not version.is_active


def test_activate_queues_a_rescore(users, version):
    response = action(users["admin"], "activate_versions", version)
    assert "Version 1 is being rescored" in response.text


def test_roll_back_and_rescore_need_history(users, version):
    assert "no earlier active version" in action(users["admin"], "roll_back", version).text
    assert "No version is active yet" in action(users["admin"], "rescore_catalogue", version).text


@pytest.fixture
def products(db):
    return {pid: Product.objects.create(external_id=pid, title=f"Product {pid}") for pid in ("a1", "b2")}


def upload(client, content, **choices):
    file = SimpleUploadedFile("judgments.csv", content.encode(), content_type="text/csv")
    return client.post(reverse("admin:shopguide_judgment_upload"), {"file": file, **choices}, follow=True)


def test_judgment_upload_can_skip_products_the_shop_no_longer_has(users, products):
    response = upload(users["admin"], "query,product_id,grade\nhose,a1,2\nhose,zz9,1\n", skip_unknown="on")
    assert "1 judgments imported" in response.text and "1 row(s) of unknown products were skipped" in response.text
    assert "judgments.csv:3: product_id: unknown product &#x27;zz9&#x27;" in response.text
    assert list(Judgment.objects.values_list("query_norm", "product_key")) == [("hose", str(products["a1"].pk))]


def test_judgment_upload_stores_every_row(users, products):
    response = upload(users["admin"], "query,product_id,grade\nhose,a1,2\nHose reel,b2,1\n")
    assert "2 judgments imported" in response.text
    assert sorted(Judgment.objects.values_list("query_norm", "grade", "source")) == [
        ("hose", 2.0, "imported"),
        ("hose reel", 1.0, "imported"),
    ]


def test_judgment_upload_with_a_bad_row_stores_nothing(users, products):
    response = upload(users["admin"], "query,product_id,grade\nhose,a1,2\nhose,zz9,1\nreel,b2,-3\n")
    assert "Nothing was imported: 2 problem(s)" in response.text
    assert "judgments.csv:3: product_id: unknown product &#x27;zz9&#x27;" in response.text
    assert "judgments.csv:4: grade: &#x27;-3&#x27; must be a number &gt;= 0" in response.text
    assert not Judgment.objects.exists()


def test_judgment_upload_is_staff_only(users, products):
    response = Client().post(reverse("admin:shopguide_judgment_upload"))
    assert response.status_code == 302
    assert (
        upload(users["shopper"], "query,product_id,grade\nhose,a1,2\n")
        .redirect_chain[-1][0]
        .startswith("/admin/login/")
    )
    assert not Judgment.objects.exists()


ADMIN_ACTIONS = ["activate_versions", "roll_back", "rescore_catalogue"]


@pytest.mark.parametrize("who", ["anonymous", "shopper"])
def test_no_shopguide_admin_page_or_action_is_open_to_non_staff(users, version, who):
    client = Client() if who == "anonymous" else users["shopper"]
    run = TrainingRun.objects.create()
    pages = [
        reverse("admin:shopguide_recommendermodel_changelist"),
        reverse("admin:shopguide_recommendermodel_change", args=[version.pk]),
        reverse("admin:shopguide_trainingrun_changelist"),
        reverse("admin:shopguide_trainingrun_change", args=[run.pk]),
        reverse("admin:shopguide_trainingrun_progress", args=[run.pk]),
        reverse("admin:shopguide_judgment_changelist"),
        reverse("admin:shopguide_judgment_upload"),
        reverse("admin:shopguide_rescore_changelist"),
        reverse("admin:shopguide_searchevent_changelist"),
    ]
    for url in pages:
        response = client.get(url)
        assert response.status_code == 302 and "/admin/login/" in response["Location"], url
    for action in ADMIN_ACTIONS:
        response = client.post(
            reverse("admin:shopguide_recommendermodel_changelist"), {"action": action, "_selected_action": [version.pk]}
        )
        assert response.status_code == 302 and "/admin/login/" in response["Location"], action
    assert client.post(reverse(RETRAIN)).status_code == 302
    version.refresh_from_db()
    assert not version.is_active and TrainingRun.objects.count() == 1
