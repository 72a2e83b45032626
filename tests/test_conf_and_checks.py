from django.test import override_settings

from shopguide.catalog_source import get_catalog_source
from shopguide.checks import check_settings
from shopguide.conf import shopguide_settings

VALID = {"PRODUCT_MODEL": "catalog.Product", "TEXT_FIELDS": ["title"], "AVAILABILITY_FIELD": "in_stock"}


def error_ids(**shopguide):
    with override_settings(SHOPGUIDE=shopguide):
        return [message.id for message in check_settings()]


def test_settings_are_read_lazily_and_follow_override_settings():
    assert shopguide_settings.PRODUCT_MODEL == "catalog.Product"
    with override_settings(SHOPGUIDE={**VALID, "CACHE_TIMEOUT": 5}):
        assert shopguide_settings.CACHE_TIMEOUT == 5
        assert get_catalog_source().text_fields == ("title",)
    assert shopguide_settings.CACHE_TIMEOUT == 3600
    assert "description" in get_catalog_source().text_fields


def test_valid_settings_pass_the_checks():
    assert error_ids(**VALID) == []
    assert error_ids(**{**VALID, "TEXT_FIELDS": ["title", "category__name", "brand__slug"]}) == []


def test_missing_or_unknown_product_model_is_an_error():
    assert error_ids() == ["shopguide.E001"]
    with override_settings(SHOPGUIDE={"PRODUCT_MODEL": "catalog.Nope"}):
        (error,) = check_settings()
    assert error.id == "shopguide.E001"
    assert "'catalog.Nope'" in error.msg


def test_unknown_text_field_names_the_field():
    with override_settings(SHOPGUIDE={**VALID, "TEXT_FIELDS": ["title", "colour", "category__nam"]}):
        errors = check_settings()
    assert [error.id for error in errors] == ["shopguide.E002", "shopguide.E002"]
    assert "'colour'" in errors[0].msg
    assert "'category__nam'" in errors[1].msg


def test_text_fields_must_be_a_list():
    assert error_ids(**{**VALID, "TEXT_FIELDS": "title"}) == ["shopguide.E002"]


def test_availability_field_must_exist_and_be_boolean():
    assert error_ids(**{**VALID, "AVAILABILITY_FIELD": "for_sale"}) == ["shopguide.E003"]
    assert error_ids(**{**VALID, "AVAILABILITY_FIELD": "title"}) == ["shopguide.E003"]


def test_unknown_keys_and_bad_adapter_path():
    assert error_ids(**VALID, PRODUCTS_MODEL="x") == ["shopguide.W001"]
    assert error_ids(**VALID, CATALOG_SOURCE="shop.nowhere.Source") == ["shopguide.E004"]


def test_an_unknown_precision_is_an_error():
    assert error_ids(**VALID, PRECISION="float32") == []
    assert error_ids(**VALID, PRECISION="half") == ["shopguide.E006"]


def test_proxy_count_and_throttle_cache_are_checked():
    assert error_ids(**VALID, PROXY_COUNT=2, THROTTLE_CACHE="throttle") == []
    for wrong in (-1, "1", 1.5, True):
        assert error_ids(**VALID, PROXY_COUNT=wrong) == ["shopguide.E007"], wrong
    assert error_ids(**VALID, THROTTLE_CACHE="redis") == ["shopguide.E008"]


def test_caches_derived_from_settings_follow_them():
    from shopguide.api import responses
    from shopguide.serving import ServingIndex

    responses.set("an answer", b"{}", 60)
    ServingIndex._current = "an index"
    with override_settings(SHOPGUIDE={**VALID, "PRECISION": "float32"}):
        assert responses.get("an answer") is None and ServingIndex._current is None


def test_every_setting_is_checked_for_its_type_and_range():
    good = dict(
        CACHE_TIMEOUT=60,
        RESCORE_CHUNK_SIZE=500,
        WARM_QUERIES=0,
        TORCH_THREADS=None,
        RERANK_BUDGET_MS=0,
        RETRAIN_EVERY_HOURS=0.5,
        RECONCILE_EVERY_MINUTES=None,
        EVENTS_RATE="30/s",
        RESCORE_ON_SAVE=False,
        AUTO_ACTIVATE="never",
        QUERY_ENCODER="torch",
        MIN_SHOPPERS=1,
        SHOPPER_TOKEN_MAX_AGE=600,
        ONLINE_SHARE=1,
        ONLINE_MIN_DECIDED=50,
    )
    assert error_ids(**VALID, **good) == []
    for name, wrong in (
        ("CACHE_TIMEOUT", "abc"),
        ("CACHE_TIMEOUT", 0),
        ("RESCORE_CHUNK_SIZE", 0),
        ("WARM_QUERIES", -5),
        ("TORCH_THREADS", 0),
        ("RERANK_BUDGET_MS", -1),
        ("RETRAIN_EVERY_HOURS", 0),
        ("RECONCILE_EVERY_MINUTES", "5"),
        ("EVENTS_RATE", "lots"),
        ("RESCORE_ON_SAVE", "yes"),
        ("AUTO_ACTIVATE", "sometimes"),
        ("QUERY_ENCODER", "onnx"),
        ("ONLINE_SHARE", 1.5),
        ("ONLINE_SHARE", "10%"),
        ("ONLINE_MIN_DECIDED", 0),
    ):
        with override_settings(SHOPGUIDE={**VALID, name: wrong}):
            (error,) = check_settings()
        assert error.id == "shopguide.E012" and f'SHOPGUIDE["{name}"] is {wrong!r}' in error.msg, (name, wrong)
    for name, wrong, error_id in (("MIN_SHOPPERS", 0, "E009"), ("SHOPPER_TOKEN_MAX_AGE", 1.5, "E010")):
        assert error_ids(**VALID, **{name: wrong}) == [f"shopguide.{error_id}"]


def test_the_apps_shopguide_needs_are_checked(settings):
    settings.INSTALLED_APPS = [app for app in settings.INSTALLED_APPS if app != "rest_framework"]
    with override_settings(SHOPGUIDE=VALID):
        (error,) = check_settings()
    assert error.id == "shopguide.E011" and "rest_framework" in error.msg


def test_a_base_model_must_make_vectors_of_the_stored_size(tmp_path):
    from shopguide.ml.encoder import default_model_path

    assert error_ids(**VALID, BASE_MODEL=str(default_model_path())) == []
    assert error_ids(**VALID, BASE_MODEL=str(tmp_path / "nowhere")) == ["shopguide.E013"]
    (tmp_path / "config.json").write_text('{"hidden_size": 768}')
    with override_settings(SHOPGUIDE={**VALID, "BASE_MODEL": str(tmp_path)}):
        (error,) = check_settings()
    assert error.id == "shopguide.E013" and "768 dimensions; shopguide stores 384" in error.msg


def test_the_versions_storage_must_be_an_alias_of_storages(settings):
    assert error_ids(**VALID) == []  # the default alias may be missing: a folder beside MEDIA_ROOT serves
    assert error_ids(**VALID, VERSIONS_STORAGE="s3-models") == ["shopguide.E014"]
    settings.STORAGES = {**settings.STORAGES, "s3-models": {"BACKEND": "django.core.files.storage.InMemoryStorage"}}
    assert error_ids(**VALID, VERSIONS_STORAGE="s3-models") == []


def test_processes_that_would_not_share_versions_or_answers_are_warned_about(settings):
    settings.MEDIA_ROOT = ""
    assert error_ids(**VALID) == ["shopguide.W002"]
    settings.STORAGES = {
        **settings.STORAGES,
        "shopguide_versions": {"BACKEND": "django.core.files.storage.InMemoryStorage"},
    }
    assert error_ids(**VALID) == []
    settings.CACHES = {**settings.CACHES, "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    assert error_ids(**VALID) == ["shopguide.W003"]


def test_an_online_comparison_that_can_never_end_and_naive_times_are_reported(settings):
    assert error_ids(**VALID, AUTO_ACTIVATE="online") == []
    assert error_ids(**VALID, AUTO_ACTIVATE="online", ONLINE_SHARE=0) == ["shopguide.W004"]
    settings.USE_TZ = False
    assert error_ids(**VALID) == ["shopguide.E015"]
