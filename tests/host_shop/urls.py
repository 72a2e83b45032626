from django.urls import include, path

urlpatterns = [path("api/shopguide/", include("shopguide.urls"))]
