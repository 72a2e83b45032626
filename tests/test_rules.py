"""Query rules: merchandisers pin, bury or hide products for a search, on every path."""

from datetime import timedelta

import pytest
from django.contrib.admin.models import LogEntry
from django.core.cache import cache
from django.template import Context, Template
from django.test import RequestFactory
from django.utils import timezone

from shopguide.models import QueryRule, RuleProduct
from shopguide.rules import LoadedRule, RuleBook, forget
from shopguide.serving import ServingIndex
from tests.conftest import heldout_slang, trained_slang_shop
from tests.slang_shop import SLANG

pytestmark = pytest.mark.serving

shop = pytest.fixture(scope="module")(trained_slang_shop)
URL = "/api/shopguide/recommendations/"
NOW = timezone.now()


def rule(pk, query, *, exact=True, pins=(), buried=(), hidden=(), starts_at=None, ends_at=None, enabled=True):
    loaded = LoadedRule(
        pk, exact, frozenset(query.split()), enabled, starts_at, ends_at, list(pins), set(buried), set(hidden)
    )
    return loaded, query


def ranked(*keys):
    return [(key, round(1.0 / (rank + 1), 4), ("matches", "drill")) for rank, key in enumerate(keys)]


def keys(rows):
    return [row[0] for row in rows]


def test_a_rule_pins_buries_and_hides_and_scores_follow_the_new_order():
    book = RuleBook(1, [rule(1, "drill", pins=[(1, "z"), (3, "c")], buried=["a"], hidden=["b"])])
    shown = book.apply("drill", ranked("a", "b", "c", "d", "e"))
    assert keys(shown) == ["z", "d", "c", "e", "a"]
    assert shown[0][2] == ("featured", "") and shown[2][2] == ("featured", "")
    assert shown[1][2] == ("matches", "drill")  # the others keep their reasons
    assert [row[1] for row in shown] == [1.0, 0.5, 0.3333, 0.25, 0.2]
    assert book.apply("hammer", ranked("a", "b")) == ranked("a", "b")  # another search: untouched


def test_a_pin_beyond_the_list_goes_last_and_hidden_wins_over_pinned():
    book = RuleBook(1, [rule(1, "drill", pins=[(40, "z"), (1, "b")]), rule(2, "drill", exact=False, hidden=["b"])])
    assert keys(book.apply("drill", ranked("a", "b", "c"))) == ["a", "c", "z"]


def test_contains_rules_match_every_search_with_their_words_and_exact_ones_come_first():
    book = RuleBook(
        1, [rule(1, "cordless drill", exact=False, pins=[(1, "x")]), rule(2, "cordless drill 18v", pins=[(1, "y")])]
    )
    assert keys(book.apply("18v cordless drill", ranked("a")))[:2] == ["x", "a"]
    assert keys(book.apply("cordless drill 18v", ranked("a")))[:3] == ["y", "x", "a"]  # same place: exact first
    assert keys(book.apply("cordless", ranked("a"))) == ["a"]  # not every word
    assert book.token("drill cordless") == (1, (1,)) and book.token("drill") == (1, ())


def test_a_rule_is_in_effect_between_its_dates_only_and_the_token_says_so():
    later = rule(1, "drill", pins=[(1, "z")], starts_at=NOW + timedelta(hours=1), ends_at=NOW + timedelta(hours=2))
    book = RuleBook(7, [later, rule(2, "drill", hidden=["a"], enabled=False)])
    assert keys(book.apply("drill", ranked("a", "b"), now=NOW)) == ["a", "b"]
    assert keys(book.apply("drill", ranked("a", "b"), now=NOW + timedelta(minutes=90))) == ["z", "a", "b"]
    assert keys(book.apply("drill", ranked("a", "b"), now=NOW + timedelta(hours=2))) == ["a", "b"]
    assert book.token("drill", now=NOW) != book.token("drill", now=NOW + timedelta(minutes=90))


@pytest.fixture
def products(shop, db):
    ServingIndex.reset()
    cache.clear()
    forget()
    return shop


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """``committed(make)`` runs ``make`` as if its transaction committed: a change of the rules
    is announced to this process then."""

    def run(make):
        with django_capture_on_commit_callbacks(execute=True):
            return make()

    return run


def word_and_first(products):
    word = next(word for word in SLANG if word not in heldout_slang(0.25))
    return word, products[SLANG[word]]


def api_ids(client, word, **params):
    body = client.get(URL, {"q": word, **params}).json()
    return [item["product"] for item in body["results"]], [item["reason"] for item in body["results"]]


def tag_ids(word):
    request = RequestFactory().get("/")
    request.session = {}
    tag = "{% load shopguide %}{% recommended_for_search query limit=8 as items %}{% for item in items %}[{{ item.product.external_id }}]{% endfor %}"
    return Template(tag).render(Context({"request": request, "query": word})).strip("[]").split("][")


def test_a_pin_shows_at_once_on_the_api_and_the_tags_with_its_reason_and_goes_when_removed(client, products, committed):
    word, first = word_and_first(products)
    pinned = next(product for product in products.values() if product != first)
    before, _ = api_ids(client, word)
    assert before[0] == first.external_id

    def make():
        made = QueryRule.objects.create(query=word.upper() + "  ", match="exact")  # matched normalised
        RuleProduct.objects.create(rule=made, product_key=str(pinned.pk), action="pin", position=1)
        return made

    made = committed(make)
    ids, reasons = api_ids(client, word)
    assert ids[:2] == [pinned.external_id, first.external_id] and reasons[0] == "featured by the shop"
    assert ids.count(pinned.external_id) == 1 and len(ids) == 8
    assert api_ids(client, word, exclude="no-such")[0][:2] == ids[:2]  # DRF's validated way too
    assert tag_ids(word)[:2] == ids[:2]

    committed(made.delete)
    assert api_ids(client, word)[0] == before
    assert tag_ids(word) == before


def test_a_hide_rule_removes_a_product_from_every_path(client, products, committed):
    word, first = word_and_first(products)

    def make():
        made = QueryRule.objects.create(query=word, match="contains")
        RuleProduct.objects.create(rule=made, product_key=str(first.pk), action="hide")

    committed(make)
    for query in (word, f"{word} please"):
        assert first.external_id not in api_ids(client, query, limit=50)[0]
        assert first.external_id not in api_ids(client, query, limit=50, exclude="no-such")[0]
        assert first.external_id not in tag_ids(query)
    assert first.external_id in api_ids(client, first.title)[0]  # searches without the word: not hidden


def test_a_rule_that_has_not_started_changes_nothing(client, products, committed):
    word, first = word_and_first(products)
    other = next(product for product in products.values() if product != first)

    def make():
        made = QueryRule.objects.create(query=word, starts_at=timezone.now() + timedelta(days=1))
        RuleProduct.objects.create(rule=made, product_key=str(other.pk), action="pin", position=1)

    committed(make)
    assert api_ids(client, word)[0][0] == first.external_id


def test_staff_manage_rules_in_the_admin_with_history_and_bad_input_changes_nothing(staff_client, products, committed):
    word, first = word_and_first(products)
    add = "/admin/shopguide/queryrule/add/"
    form = {
        "query": word,
        "match": "exact",
        "enabled": "on",
        "note": "spring campaign",
        "products-TOTAL_FORMS": "2",
        "products-INITIAL_FORMS": "0",
        "products-0-product_key": str(first.pk),
        "products-0-action": "pin",
        "products-0-position": "",
        "products-1-product_key": "no-such-product",
        "products-1-action": "hide",
    }
    response = staff_client.post(add, form)
    assert response.status_code == 200
    errors = str(response.context["inline_admin_formsets"][0].formset.errors)
    assert "needs a position from 1 to 50" in errors and "No product has the key no-such-product" in errors
    assert not QueryRule.objects.exists() and not RuleProduct.objects.exists()

    form.update({"products-0-position": "2", "products-1-product_key": str(products["p8"].pk)})
    response = committed(lambda: staff_client.post(add, form))
    assert response.status_code == 302, response.context and response.context["errors"]
    made = QueryRule.objects.get()
    assert made.updated_by.username == "staff" and made.query_norm == word
    assert sorted(map(str, made.products.all())) == sorted([f"pin {first.pk} at 2", f"hide {products['p8'].pk}"])
    assert LogEntry.objects.filter(object_id=str(made.pk)).count() == 1  # the history: who, when, what

    page = staff_client.get(f"/admin/shopguide/queryrule/{made.pk}/change/").content.decode()
    shown = page[page.index('<ol class="shopguide-preview">') :]
    assert shown.index(first.title) < shown.index("</ol>") and products["p8"].title not in shown[: shown.index("</ol>")]
    assert shown.count("featured by the shop") == 1  # what shoppers see now: pinned, the hidden one gone
    listing = staff_client.get("/admin/shopguide/queryrule/").content.decode()
    assert word in listing and f"pin “{first.title}” at 2" in listing and f"hide “{products['p8'].title}”" in listing
    found = staff_client.get("/admin/shopguide/queryrule/products/", {"term": first.title.split(",")[0]}).json()
    assert {"key": str(first.pk), "title": first.title} in found["results"]
    assert staff_client.get("/admin/shopguide/queryrule/products/", {"term": "p3"}).json()["results"][0] == {
        "key": str(products["p3"].pk),
        "title": products["p3"].title,
    }  # the shop's own id


def test_strangers_cannot_read_the_product_lookup_or_the_rules(client, products):
    response = client.get("/admin/shopguide/queryrule/products/", {"term": "hose"})
    assert response.status_code == 302 and "/login/" in response["Location"]
    assert client.get("/admin/shopguide/queryrule/").status_code == 302


def test_pins_at_one_place_in_one_rule_keep_the_order_they_were_given():
    book = RuleBook(1, [rule(1, "drill", pins=[(1, "9"), (1, "10")])])
    assert keys(book.apply("drill", ranked("a"))) == ["9", "10", "a"]


def test_rules_that_cannot_be_read_cost_no_answer(client, products, monkeypatch, caplog):
    word, first = word_and_first(products)

    def fail(version):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(RuleBook, "load", classmethod(lambda cls, version: fail(version)))
    assert api_ids(client, word)[0][0] == first.external_id
    assert "query rules could not be read (RuntimeError: the database went away); none apply" in caplog.text


def test_a_key_typed_another_way_is_stored_as_the_catalogue_writes_it(staff_client, products, committed):
    word, first = word_and_first(products)
    other = products["p8"]
    form = {
        "query": word,
        "match": "exact",
        "enabled": "on",
        "products-TOTAL_FORMS": "1",
        "products-INITIAL_FORMS": "0",
        "products-0-product_key": f" 00{other.pk} ",
        "products-0-action": "pin",
        "products-0-position": "1",
    }
    assert committed(lambda: staff_client.post("/admin/shopguide/queryrule/add/", form)).status_code == 302
    assert RuleProduct.objects.get().product_key == str(other.pk)
    assert api_ids(staff_client, word)[0][0] == other.external_id
    form.update({"query": "ß" * 200})  # 400 letters once case-folded: more than its column
    response = staff_client.post("/admin/shopguide/queryrule/add/", form)
    assert "too long once normalised" in response.text and QueryRule.objects.count() == 1
