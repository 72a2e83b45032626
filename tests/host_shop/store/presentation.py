from shopguide.catalog_source import CatalogSource


class StoreSource(CatalogSource):
    """Prices the way this shop prints them."""

    def price(self, item):
        return f"{item.price:.2f} €".replace(".", ",")
