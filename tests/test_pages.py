import pytest
from django.test import Client
from django.urls import reverse

from catalog.models import Category, Product, SearchLog

pytestmark = pytest.mark.serving


@pytest.fixture
def products(db):
    tools = Category.objects.create(name="Power Tools", slug="power-tools")
    garden = Category.objects.create(name="Garden", slug="garden")
    return {
        "drill": Product.objects.create(
            external_id="d1", title="Cordless Drill Driver", description="Two batteries", category=tools, price="79.00"
        ),
        "saw": Product.objects.create(
            external_id="s1", title="Circular Saw", description="Corded, 15 amp blade motor", category=tools
        ),
        "hose": Product.objects.create(
            external_id="h1", title="Garden Hose", description="Kink-free hose for watering", category=garden
        ),
    }


def test_search_lists_products_matching_all_words_first(client, products):
    response = client.get(reverse("catalog:search"), {"q": "cordless drills"})
    assert response.status_code == 200
    assert list(response.context["page"]) == [products["drill"]]
    assert response.context["all_words_matched"]
    assert "Cordless Drill Driver" in response.text
    assert SearchLog.objects.get().result_count == 1


def test_search_falls_back_to_any_word(client, products):
    response = client.get(reverse("catalog:search"), {"q": "watering saw"})
    assert set(response.context["page"]) == {products["hose"], products["saw"]}
    assert not response.context["all_words_matched"]
    assert "match some of them" in response.text


def test_search_without_matches_says_so(client, products):
    response = client.get(reverse("catalog:search"), {"q": "trampoline"})
    assert response.context["page"].paginator.count == 0
    assert "No products match" in response.text


def test_query_with_html_is_escaped(client, products):
    response = client.get(reverse("catalog:search"), {"q": "<script>alert(1)</script>"})
    assert "<script>alert(1)</script>" not in response.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in response.text


def test_product_page_remembers_the_last_search_of_a_shopper_with_a_session(client, products):
    client.get(reverse("catalog:search"), {"q": "drill"})
    assert client.get(products["hose"].get_absolute_url()).context["query"] == ""  # no session, nothing kept
    client.post(reverse("catalog:add-to-cart", args=[products["hose"].pk]))  # a cart: now a session
    client.get(reverse("catalog:search"), {"q": "garden hose"})
    response = client.get(products["hose"].get_absolute_url())
    assert response.status_code == 200
    assert response.context["query"] == "garden hose"
    assert "Kink-free hose" in response.text
    assert client.get(products["hose"].get_absolute_url(), {"q": "hose"}).context["query"] == "hose"


def test_home_and_category_pages(client, products):
    home = client.get(reverse("catalog:home"))
    assert "Power Tools" in home.text and "Garden" in home.text
    category = client.get(reverse("catalog:category", args=["garden"]))
    assert list(category.context["page"]) == [products["hose"]]


def test_admin_shows_the_catalogue_to_staff_only(staff_client, products):
    url = reverse("admin:catalog_product_changelist")
    assert Client().get(url).status_code == 302
    response = staff_client.get(url)
    assert response.status_code == 200
    assert "Cordless Drill Driver" in response.text and "Garden Hose" in response.text


def test_static_files_are_served_with_debug_off(client, settings):
    assert not settings.DEBUG  # as in production: nothing of Django's development serving
    for path, content in (
        ("/static/shopguide/tracking.js", b"X-Shopguide-Token"),
        ("/static/admin/css/base.css", b"body"),
        ("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js", b"SwaggerUIBundle"),
    ):
        response = client.get(path)
        assert response.status_code == 200, path
        assert content in b"".join(response.streaming_content), path
