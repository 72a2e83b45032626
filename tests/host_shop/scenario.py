"""A shop that is not the demo adopts shopguide through its documented surface only, end to end:
check, migrate, import its judgments (an export naming an item that is gone), the beat schedule
of its own Celery app, a training on a real worker of that app, the strip in its own price
format, the API in its own ids, its searches and events in the search insights, and a stock
sync by ``update()`` caught by the reconciliation.

Run by ``tests/test_host_shop.py`` in a process of its own (its own settings, database, queues);
exits non-zero at the first broken promise.
"""

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ["DJANGO_SETTINGS_MODULE"] = "tests.host_shop.settings"
import django  # noqa: E402

django.setup()

from celery import signals  # noqa: E402
from celery.beat import Service  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.template import Context, Template  # noqa: E402
from django.test import Client, RequestFactory  # noqa: E402
from django.utils import timezone  # noqa: E402

from shopguide import operations  # noqa: E402
from shopguide.insights import insights  # noqa: E402
from shopguide.models import Judgment, ProductVector, QueryRule, RuleProduct, TrainingRun  # noqa: E402
from shopguide.services import recommend, record_search  # noqa: E402
from shopguide.versions import active_model  # noqa: E402
from tests.host_shop.celery import app  # noqa: E402
from tests.host_shop.store.models import Department, Item  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
ITEMS = {  # sku: (name, department, what shoppers call it)
    "K-100": ("Stainless electric kettle 1.7 l", "Kitchen", "bolliator"),
    "K-200": ("Cast iron skillet, 12 inch", "Kitchen", "flipmaster"),
    "K-300": ("Bamboo cutting board set", "Kitchen", "choppo"),
    "G-100": ("Cordless hedge trimmer", "Garden", "snipzilla"),
    "G-200": ("Expanding garden hose, 30 m", "Garden", "wetnoodle"),
    "G-300": ("Galvanised watering can", "Garden", "drizzlepot"),
    "B-100": ("Rainfall shower head", "Bath", "splashdome"),
    "B-200": ("Heated towel rail", "Bath", "toastytowel"),
    "L-100": ("Warm white LED filament bulb", "Lighting", "glowbean"),
    "L-200": ("Brass reading lamp", "Lighting", "booklight"),
}


def step(message):
    print(f"host shop: {message}", flush=True)


def wait_until(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


def beat_entries():
    service = Service(app=app, schedule_filename=tempfile.mktemp())
    signals.beat_init.send(sender=service)  # what `celery -A tests.host_shop beat` sends
    return set(service.scheduler.schedule)


def strip_html(query):
    template = Template("{% load shopguide %}{% shopguide_recommendations query limit=3 %}")
    return template.render(Context({"request": RequestFactory().get("/"), "query": query}))


def api(query, **params):
    response = Client().get("/api/shopguide/recommendations/", {"q": query, **params})
    assert response.status_code == 200, response.content
    return response.json()["results"]


def main():
    call_command("check", fail_level="WARNING")
    call_command("migrate", verbosity=0)
    call_command("createcachetable", verbosity=0)
    step("checked and migrated")

    departments = {name: Department.objects.create(name=name) for name in {d for _, d, _ in ITEMS.values()}}
    for sku, (name, department, _) in ITEMS.items():
        Item.objects.create(sku=sku, name=name, department=departments[department], price="12.50")
    export = Path(tempfile.mkdtemp()) / "judgments.csv"
    rows = [f"{word},{sku},2" for sku, (_, _, word) in ITEMS.items()] + ["sparkletub,Z-999,2"]  # Z-999: gone
    export.write_text("query,product_id,grade\n" + "\n".join(rows) + "\n")
    call_command("shopguide_import", "judgments", str(export), "--skip-unknown", verbosity=0)
    assert Judgment.objects.count() == len(ITEMS), Judgment.objects.count()
    step("imported its judgments, the gone item skipped")

    assert {"shopguide-retrain", "shopguide-reconcile"} <= beat_entries()
    step("its own Celery app's beat has shopguide's schedule")

    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "tests.host_shop", "worker", "--concurrency", "1", "--loglevel",
         "WARNING", "-Q", "host_celery,host_training,host_rescore", "--hostname", "host-shop@%h"],
        cwd=ROOT,
        start_new_session=True,
    )  # fmt: skip
    try:
        run = operations.train(
            {"epochs": 6, "max_pairs": 16, "reranker": False, "holdout_share": 0.2}, activate="always"
        )
        wait_until(lambda: TrainingRun.objects.get(pk=run.pk).status in ("succeeded", "failed"), 300, "training")
        run.refresh_from_db()
        assert run.status == "succeeded", run.error
        wait_until(lambda: active_model() is not None and ProductVector.objects.count() == len(ITEMS), 180, "serving")
        model = active_model()
        bucket = Path(os.environ["HOST_SHOP_BUCKET"])
        assert (bucket / model.artifact_path / "encoder").is_dir(), list(bucket.rglob("*"))[:5]
        assert not (Path(os.environ["HOST_SHOP_MEDIA_ROOT"]) / "shopguide" / "models").exists()
        step(f"trained v{model.version} on its worker, stored in its versions' storage, serving")

        html = strip_html("bolliator")
        assert "12,50 €" in html and "$" not in html, html
        assert 'data-shopguide-product="K-' in html and "data-shopguide-token=" in html, html
        results = api("bolliator")
        assert results[0]["product"] == "K-100" and results[0]["price"] == "12,50 €", results
        assert "K-100" not in [row["product"] for row in api("bolliator", exclude="K-100")]
        assert model.folder.is_relative_to(bucket.parent / (bucket.name + "-copies"))  # this process's copy
        step("the strip and the API speak its own prices and ids")

        record_search(RequestFactory().get("/find/"), "Bolliator", results=0)  # its own search view's call
        token = re.search(r'data-shopguide-token="([^"]+)"', html).group(1)
        assert f'data-shopguide-version="{model.version}"' in html, html
        shown = {
            "query": "bolliator",
            "product": "K-100",
            "placement": "strip",
            "position": 1,
            "version": model.version,
        }
        posted = Client().post(
            "/api/shopguide/events/", [shown | {"event": "impression"}, shown | {"event": "click"}],
            content_type="application/json", HTTP_X_SHOPGUIDE_TOKEN=token,
        )  # fmt: skip
        assert posted.status_code == 201, posted.content
        today = insights(timezone.localdate(), timezone.localdate())
        assert (today.totals.searches, today.totals.no_results, today.totals.strips) == (1, 1, 1), today.totals
        assert [(row.version, row.views, row.clicked_views) for row in today.versions] == [(model.version, 1, 1)]
        step("its searches and the strip's views and clicks, in its own ids, show in the search insights")

        featured = Item.objects.exclude(sku="K-100").order_by("sku").first()
        rule = QueryRule.objects.create(query="Bolliator ", match=QueryRule.Match.CONTAINS)
        RuleProduct.objects.create(rule=rule, product_key=str(featured.pk), action=RuleProduct.Action.PIN, position=1)
        pinned = api("bolliator")
        assert [row["product"] for row in pinned][:2] == [featured.sku, "K-100"], pinned
        assert pinned[0]["reason"] == "featured by the shop", pinned
        RuleProduct.objects.create(rule=rule, product_key=str(Item.objects.get(sku="K-100").pk), action="hide")
        assert "K-100" not in [row["product"] for row in api("bolliator")]
        rule.delete()
        assert api("bolliator") == results
        step("a query rule pins and hides its own items at once, and goes when deleted")

        Item.objects.filter(sku="K-100").update(active=False)  # a stock sync: no signal
        assert operations.reconcile() == 1
        assert "K-100" not in [row["product"] for row in api("bolliator")]
        assert "K-100" not in [item.public_id for item in recommend("bolliator")]
        step("an item made unavailable by update() left every answer after the reconciliation")
    finally:
        os.killpg(worker.pid, 15)
        worker.wait(timeout=60)


if __name__ == "__main__":
    main()
