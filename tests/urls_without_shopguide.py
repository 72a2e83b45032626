"""A project that shows shopguide's strip but forgot to include shopguide.urls."""

from django.urls import include, path

urlpatterns = [path("", include("catalog.urls"))]
