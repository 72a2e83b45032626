import pytest

from catalog.models import Brand, Category, Product
from shopguide.catalog_source import get_catalog_source


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
