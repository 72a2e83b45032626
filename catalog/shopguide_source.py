"""How the demo shop presents its products in shopguide's strip and API: the adapter's
extension point (``SHOPGUIDE["CATALOG_SOURCE"]``), as a shop with its own price format uses it."""

from shopguide.catalog_source import CatalogSource


class DemoCatalogSource(CatalogSource):
    def price(self, product):
        return None if product.price is None else f"${product.price}"
