from decimal import Decimal

import pytest
from django.template import Context, Template
from django.test import RequestFactory

from catalog.models import Brand, Category, Product
from shopguide.catalog_source import CatalogSource, get_catalog_source
from shopguide.services import recommend


@pytest.fixture
def products(db):
    lighting = Category.objects.create(name="Lighting", slug="lighting")
    lumen = Brand.objects.create(name="Lumen", slug="lumen")
    return [
        Product.objects.create(
            external_id="a", title="LED Bulb", description="<p>Warm <b>white</b></p>", category=lighting, brand=lumen
        ),
        Product.objects.create(external_id="b", title="Desk Lamp", in_stock=False),
    ]


def test_texts_join_configured_fields_without_html(products):
    source = get_catalog_source()
    texts = dict(source.iter_texts(source.all_products()))
    assert texts[source.key(products[0])] == "LED Bulb | Lighting | Lumen | Warm white"
    assert texts[source.key(products[1])] == "Desk Lamp"


def test_only_available_products_by_default(products):
    source = get_catalog_source()
    assert [key for key, _ in source.iter_texts()] == [source.key(products[0])]


def test_products_by_key_skips_unknown_and_malformed_keys(products):
    source = get_catalog_source()
    keys = [source.key(products[0]), source.key(products[1]), "999999", "not-a-number"]
    assert source.products_by_key(keys) == {source.key(products[0]): products[0]}
    assert len(source.products_by_key(keys, available_only=False)) == 2


class EuroSource(CatalogSource):
    """A shop that shows prices its own way and has product images."""

    def price(self, product):
        return None if product.price is None else f"{product.price:.2f} €".replace(".", ",")

    def image_url(self, product):
        return f"/media/items/{product.external_id}.jpg"


def test_the_adapter_presents_products_in_the_strip_and_the_api(db, client, settings):
    kettle = Product.objects.create(external_id="k1", title="Electric kettle", price=Decimal("12.5"))
    settings.SHOPGUIDE = {**settings.SHOPGUIDE, "CATALOG_SOURCE": "shopguide.catalog_source.CatalogSource"}
    (item,) = recommend("electric kettle")
    assert (item.title, item.price, item.image_url, item.public_id) == ("Electric kettle", "12.50", None, "k1")

    settings.SHOPGUIDE = {**settings.SHOPGUIDE, "CATALOG_SOURCE": "tests.test_catalog_source.EuroSource"}
    (answer,) = client.get("/api/shopguide/recommendations/", {"q": "electric kettle"}).json()["results"]
    assert answer == {
        "product": "k1",
        "title": "Electric kettle",
        "url": kettle.get_absolute_url(),
        "price": "12,50 €",
        "image": "/media/items/k1.jpg",
        "score": answer["score"],
        "reason": answer["reason"],
    }
    request = RequestFactory().get("/")
    html = Template("{% load shopguide %}{% shopguide_recommendations 'electric kettle' %}").render(
        Context({"request": request})
    )
    assert "12,50 €" in html and 'src="/media/items/k1.jpg"' in html and "$" not in html
    assert 'data-shopguide-product="k1"' in html
