"""The shop as people use it, in a real browser (Debian's chromium driven by Playwright) against
a live server on the test database, with a real Celery worker where the flow needs one.

Each test leaves screenshots of its final page, at desktop and phone widths, under
tests/screenshots/ (git-ignored)."""

import os
import shutil
import time
from pathlib import Path

import pytest
from django.core.cache import cache, caches
from django.core.management import call_command
from playwright.sync_api import expect

from catalog.models import Product
from shopguide.models import RecommenderModel, SearchEvent
from shopguide.serving import ServingIndex
from tests.conftest import heldout_slang
from tests.slang_shop import PRODUCTS, SLANG
from tests.test_worker import Worker, purge_queues

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
DEMO_DATA = Path(__file__).resolve().parent.parent / "catalog" / "demo_data"
SIZES = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
# Playwright's synchronous API keeps an event loop in this thread; the ORM calls of these
# tests are ordinary synchronous code all the same.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):
        raise RuntimeError("chromium is missing: .ci/run installs it with apt-get")
    pytestmark.append(pytest.mark.skip(reason="chromium is not installed (apt-get install chromium)"))


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"]
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport=SIZES["desktop"])
    page = context.new_page()
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.dialogs = dialogs
    yield page
    context.close()


def screenshots(page, name):
    """The page as it is now, at desktop and at phone width (full page)."""
    SCREENSHOTS.mkdir(exist_ok=True)
    for size, viewport in SIZES.items():
        page.set_viewport_size(viewport)
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{size}.png"), full_page=True)
    page.set_viewport_size(SIZES["desktop"])


def wait_until(condition, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.25)
    raise AssertionError(f"still false after {timeout}s: {condition}")


@pytest.fixture
def demo_shop(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    ServingIndex.reset()
    cache.clear()  # the cache table outlives the flush: answers naming an earlier test's products
    caches["throttle"].clear()  # and the events throttle's counts of the earlier tests' pages
    call_command("load_catalog", str(DEMO_DATA), verbosity=0)


def key_of(public_id):
    """The stored key of a product the page names by the shop's own id (data-shopguide-product)."""
    return str(Product.objects.get(external_id=public_id).pk)


def clicks_on(key, query="cordless drill"):
    return SearchEvent.objects.filter(event="click", product_key=key, query_norm=query).count()


def test_shopper_searches_opens_a_product_and_follows_a_recommendation(live_server, page, demo_shop):
    page.goto(live_server.url)
    page.fill("input[name=q]", "cordless drill")
    page.press("input[name=q]", "Enter")
    page.wait_for_url("**/search/?q=cordless+drill")
    assert "cordless drill" in page.inner_text("h1").lower()
    assert page.locator(".card").count() > 0 and page.locator(".shopguide-strip .shopguide-card").count() > 0
    screenshots(page, "shopper-search-results")
    result = key_of(page.locator(".card").first.get_attribute("data-shopguide-product"))
    clicks = clicks_on(result)
    page.locator(".card a").first.click()
    opened = page.inner_text("h1")
    # The search results reported what was shown and what was opened.
    wait_until(lambda: clicks_on(result) == clicks + 1)
    assert SearchEvent.objects.filter(event="impression", product_key=result, session__gt="").exists()

    strip = page.locator(".shopguide-strip")
    assert strip.locator("h2").inner_text() == "Recommended for your search"
    titles = strip.locator(".shopguide-card__title").all_inner_texts()
    assert titles and opened not in titles
    assert all("drill" in title.lower() or "cordless" in title.lower() for title in titles[:3]), titles
    reasons = strip.locator(".shopguide-card__reason").all_inner_texts()
    assert all(reason.startswith("matches") for reason in reasons[:3]), reasons
    shown = strip.locator(".shopguide-card").evaluate_all("cards => cards.map(c => c.dataset.shopguideProduct)")
    keys = [key_of(public_id) for public_id in shown]
    wait_until(
        lambda: (
            set(keys)
            <= set(
                SearchEvent.objects.filter(event="impression", query_norm="cordless drill", session__gt="").values_list(
                    "product_key", flat=True
                )
            )
        )
    )

    chosen = strip.locator(".shopguide-card").first
    key = key_of(chosen.get_attribute("data-shopguide-product"))
    clicks = clicks_on(key)
    chosen.locator("a").click()
    page.wait_for_url(f"**/product/{key}/?q=cordless%20drill")
    wait_until(lambda: clicks_on(key) == clicks + 1)
    assert page.inner_text("h1") == titles[0]
    screenshots(page, "shopper-product-page")

    # The product page's buttons: the shop's server records what goes in the cart and is bought.
    product_page = page.url
    page.click("text=Add to cart")
    page.wait_for_url("**/cart/")
    assert titles[0] in page.inner_text("table.cart")
    recorded = SearchEvent.objects.filter(import_key=None)  # not the demo data's own events
    carted = recorded.get(event="add_to_cart")
    assert (carted.product_key, carted.query_norm) == (key, "cordless drill") and carted.session and carted.voter
    screenshots(page, "shopper-cart")
    page.click("text=Place order")
    assert "order #" in page.inner_text("h1") and titles[0] in page.inner_text(".order-lines")
    bought = recorded.get(event="purchase")
    assert (bought.product_key, bought.query_norm, bought.session) == (key, "cordless drill", carted.session)
    page.goto(product_page)
    page.click("text=Buy now")
    assert "order #" in page.inner_text("h1")
    assert recorded.filter(event="purchase", product_key=key, session=carted.session).count() == 2


def test_an_empty_search_still_recommends(live_server, page, demo_shop):
    page.goto(f"{live_server.url}/search/?q=qwxzv+plmokn")
    assert page.locator(".no-results").count() == 1
    assert page.locator(".shopguide-strip .shopguide-card").count() > 0
    screenshots(page, "shopper-empty-results")


def test_html_and_script_in_a_query_render_as_text(live_server, page, demo_shop):
    query = '<script>window.__pwned = 1; alert(1)</script><img src=x onerror="window.__pwned = 2"> drill'
    page.goto(live_server.url)
    page.fill("input[name=q]", query)
    page.press("input[name=q]", "Enter")
    page.wait_for_load_state("networkidle")
    assert query in page.inner_text("h1")
    assert page.evaluate("window.__pwned") is None and page.dialogs == []
    page.locator(".card a").first.click()
    page.wait_for_load_state("networkidle")
    assert query in page.inner_text(".breadcrumbs") and page.locator(".shopguide-strip").count() == 1
    assert page.evaluate("window.__pwned") is None and page.dialogs == []
    screenshots(page, "html-query-as-text")


@pytest.fixture
def slang_shop(settings, tmp_path, django_user_model):
    settings.MEDIA_ROOT = tmp_path / "media"
    ServingIndex.reset()
    from shopguide.models import Judgment

    purge_queues()
    products = {
        pid: Product.objects.create(external_id=pid, title=title, price=10 + n)
        for n, (pid, title) in enumerate(PRODUCTS.items())
    }
    for word, pid in SLANG.items():
        Judgment.objects.create(query=word, product_key=str(products[pid].pk), grade=2)
    django_user_model.objects.create_superuser("owner", "owner@example.com", "a good password")
    worker = Worker(settings.MEDIA_ROOT, tmp_path / "worker.log")
    worker.start()
    yield products
    worker.stop()


def test_staff_retrain_from_the_admin_and_the_shopper_sees_what_was_learned(live_server, page, slang_shop):
    page.goto(f"{live_server.url}/search/?q=zorblax")
    assert page.locator(".shopguide-card__reason").first.inner_text() == "popular in this shop"

    page.goto(f"{live_server.url}/admin/")
    page.fill("input[name=username]", "owner")
    page.fill("input[name=password]", "a good password")
    page.click("input[type=submit]")
    page.click("text=Recommender models")
    page.click("#shopguide-retrain")
    page.wait_for_url("**/admin/shopguide/trainingrun/*/change/")
    progress = page.locator(".shopguide-progress")
    seen = set()
    deadline = time.monotonic() + 300
    while progress.get_attribute("data-status") != "succeeded":  # the page polls; nobody reloads it
        assert progress.get_attribute("data-status") != "failed", progress.inner_text()
        assert time.monotonic() < deadline, "training did not finish in 300 s"
        seen.add(page.evaluate("document.querySelector('.shopguide-progress progress').value"))
        time.sleep(0.5)
    assert len(seen) > 1  # the bar moved while we watched
    # The page reloads itself once the run finished; while it does, the field is not there yet.
    expect(page.locator(".field-status .readonly")).to_have_text("succeeded", timeout=30_000)
    assert "version 1" in progress.inner_text()  # the page reloaded itself once the run finished
    screenshots(page, "staff-training-run")

    wait_until(lambda: RecommenderModel.objects.filter(is_active=True).exists(), 120)
    page.goto(f"{live_server.url}/admin/shopguide/recommendermodel/")
    assert "v1" in page.inner_text("#result_list")
    page.locator("#result_list tbody th a").first.click()  # the version's page: figures a merchandiser reads
    page.wait_for_url("**/recommendermodel/*/change/")
    expect(page.locator(".field-quality table.shopguide-figures small").first).to_have_attribute(
        "title", "95% bootstrap interval over the queries"
    )
    screenshots(page, "staff-version-page")
    word = next(word for word in SLANG if word not in heldout_slang(0.1))
    ServingIndex.reset()
    page.goto(f"{live_server.url}/search/?q={word}")
    first = page.locator(".shopguide-card__title").first.inner_text()
    assert first == PRODUCTS[SLANG[word]]
    screenshots(page, "shopper-after-training")


def strip_ids(page):
    return page.locator(".shopguide-strip .shopguide-card").evaluate_all(
        "cards => cards.map(c => c.dataset.shopguideProduct)"
    )


def add_rule(page, live_server, query, product, action, position=""):
    """Staff add a rule in the admin, finding the product by typing part of its title."""
    page.goto(f"{live_server.url}/admin/shopguide/queryrule/add/")
    page.fill("#id_query", query)
    field = page.locator("input[name='products-0-product_key']")
    field.press_sequentially(product.title.split()[1].lower(), delay=20)  # a word of the title
    page.wait_for_function(
        "key => [...document.querySelectorAll('datalist option')].some(o => o.value === key)", arg=str(product.pk)
    )
    field.fill(str(product.pk))  # the suggestion's value
    page.select_option("select[name='products-0-action']", action)
    page.fill("input[name='products-0-position']", str(position))
    screenshots(page, f"rules-admin-{action}")
    page.click("input[name=_save]")
    expect(page.locator(".messagelist")).to_contain_text("was added successfully")


def test_staff_pin_and_hide_products_for_a_search_and_shoppers_see_it_at_once(
    live_server, page, browser, demo_shop, django_user_model
):
    django_user_model.objects.create_superuser("merchandiser", "m@example.com", "a good password")
    shopper = browser.new_context(viewport=SIZES["desktop"]).new_page()
    search = f"{live_server.url}/search/?q=cordless+drill"
    shopper.goto(search)
    before = strip_ids(shopper)
    pinned = Product.objects.filter(title__icontains="hose").exclude(external_id__in=before).first()
    assert before and pinned is not None

    page.goto(f"{live_server.url}/admin/")
    page.fill("input[name=username]", "merchandiser")
    page.fill("input[name=password]", "a good password")
    page.click("input[type=submit]")
    add_rule(page, live_server, "Cordless  Drill", pinned, "pin", 1)

    shopper.goto(search)
    assert strip_ids(shopper)[0] == pinned.external_id
    assert shopper.locator(".shopguide-card__reason").first.inner_text() == "featured by the shop"
    screenshots(shopper, "rules-shopper-pinned")

    page.click("text=Cordless Drill")  # the rule in the list
    page.click("a.deletelink")
    page.click("input[type=submit]")  # "Yes, I'm sure"
    expect(page.locator(".messagelist")).to_contain_text("was deleted successfully")
    shopper.goto(search)
    assert strip_ids(shopper) == before

    hidden = Product.objects.get(external_id=before[0])
    add_rule(page, live_server, "cordless drill", hidden, "hide")
    page.goto(f"{live_server.url}/admin/shopguide/queryrule/")
    screenshots(page, "rules-admin-list")
    shopper.goto(search)
    assert hidden.external_id not in strip_ids(shopper) and strip_ids(shopper)
    shopper.locator(".card a").first.click()  # a product page: its strip follows the last search
    shopper.wait_for_load_state("networkidle")
    assert shopper.locator(".shopguide-strip").count() == 1 and hidden.external_id not in strip_ids(shopper)
    answer = shopper.evaluate("fetch('/api/shopguide/recommendations/?q=cordless+drill&limit=50').then(r => r.json())")
    assert hidden.external_id not in [item["product"] for item in answer["results"]]
    shopper.context.close()


def test_staff_read_what_shoppers_searched_and_chose_in_the_search_insights(
    live_server, page, browser, demo_shop, django_user_model
):
    from shopguide.models import DailySearches

    shopper = browser.new_context(viewport=SIZES["desktop"]).new_page()
    shopper.goto(f"{live_server.url}/search/?q=cordless+drill")
    second = shopper.locator(".shopguide-strip .shopguide-card").nth(1)
    key = key_of(second.get_attribute("data-shopguide-product"))
    second.locator("a").click()
    shopper.wait_for_url(f"**/product/{key}/**")
    clicked = SearchEvent.objects.filter(event="click", import_key=None, placement="strip")
    wait_until(lambda: clicked.filter(product_key=key, position=2, query_norm="cordless drill").exists())
    impressions = SearchEvent.objects.filter(event="impression", import_key=None, query_norm="cordless drill")
    wait_until(lambda: {1, 2, 3} <= set(impressions.filter(placement="strip").values_list("position", flat=True)))
    wait_until(lambda: impressions.filter(placement="results", position=1).exists())
    shopper.goto(f"{live_server.url}/search/?q=unicorn+saddle")  # the demo shop has none
    wait_until(lambda: DailySearches.objects.filter(query_norm="unicorn saddle", no_results=1).exists())
    strip_views = SearchEvent.objects.filter(event="impression", placement="strip", import_key=None)
    wait_until(lambda: len(set(strip_views.values_list("session", "query_norm"))) == 3)  # the events of all 3 pages
    shopper.context.close()

    django_user_model.objects.create_superuser("merchandiser", "m@example.com", "a good password")
    page.goto(f"{live_server.url}/admin/shopguide/searchevent/")
    page.fill("input[name=username]", "merchandiser")
    page.fill("input[name=password]", "a good password")
    page.click("input[type=submit]")
    page.click("text=Search insights")
    expect(page.locator("#insights-searches dd")).to_have_text("2")
    expect(page.locator("#insights-no-results dd")).to_have_text("50.0%")
    # The strip was seen on three pages (both searches, and the product page opened from it), by
    # a shopper without a session: each page names them anew. One of those views had a click.
    expect(page.locator("#insights-views dd")).to_have_text("3")
    expect(page.locator("#insights-click-through dd")).to_have_text("33.3%")
    expect(page.locator("#insights-position dd")).to_have_text("2.00")
    expect(page.locator("#insights-no-results tbody th")).to_have_text(["unicorn saddle"])
    top = page.locator("#insights-top tbody th").all_inner_texts()
    assert sorted(top) == ["cordless drill", "unicorn saddle"]
    screenshots(page, "staff-search-insights")
