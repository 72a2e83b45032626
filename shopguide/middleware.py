"""``shopguide.middleware.DatabaseUnavailableMiddleware``: a lost database connection becomes a
503 with a ``Retry-After`` hint (JSON for API requests), not a traceback page."""

import logging

from django.db import InterfaceError, OperationalError, connections
from django.http import HttpResponse, JsonResponse

logger = logging.getLogger(__name__)

RETRY_AFTER_SECONDS = 5


class DatabaseUnavailableMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if not isinstance(exception, (OperationalError, InterfaceError)):
            return None
        logger.error("Database unavailable during %s %s: %s", request.method, request.path, exception)
        for connection in connections.all(initialized_only=True):
            connection.close_if_unusable_or_obsolete()  # the next request gets a fresh connection
        message = "The shop's database is unavailable for a moment; please try again shortly."
        if request.path.startswith("/api/") or "application/json" in request.headers.get("Accept", ""):
            response = JsonResponse(
                {"error": {"status": 503, "code": "database_unavailable", "message": message, "fields": {}}}, status=503
            )
        else:
            response = HttpResponse(f"<!doctype html><title>Try again shortly</title><h1>{message}</h1>", status=503)
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
