"""Schema-driven fuzzing: schemathesis generates requests from the OpenAPI schema the demo
serves, valid and invalid, against the real app and database. No request may cause a server
error, and every documented response must match the schema."""

import pytest
import schemathesis
from django.core.cache import cache
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from shopguide.serving import ServingIndex
from tests.conftest import trained_slang_shop

shop = pytest.fixture(scope="module")(trained_slang_shop)


@pytest.fixture
def keep_connection():
    """Like Django's test client: requests must not close the test's transaction."""
    for signal in (request_started, request_finished):
        signal.disconnect(close_old_connections)
    yield
    for signal in (request_started, request_finished):
        signal.connect(close_old_connections)


def test_no_request_breaks_the_api(shop, db, settings, keep_connection):
    settings.SHOPGUIDE = {**settings.SHOPGUIDE, "EVENTS_RATE": None}
    ServingIndex.reset()
    cache.clear()
    schema = schemathesis.openapi.from_wsgi("/api/schema/", get_wsgi_application())
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {operation.path for operation in operations} >= {
        "/api/shopguide/recommendations/",
        "/api/shopguide/events/",
        "/api/shopguide/models/",
    }
    for operation in operations:

        @given(case=operation.as_strategy())
        @hypothesis_settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
        def call(case):
            case.call_and_validate(checks=[not_a_server_error, response_schema_conformance])

        call()
