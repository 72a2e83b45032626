"""``path("api/shopguide/", include("shopguide.urls"))`` in the shop's URLconf."""

from django.urls import path

from . import api

app_name = "shopguide-api"

urlpatterns = [
    path("recommendations/", api.RecommendationsView.as_view(), name="recommendations"),
    path("events/", api.EventsView.as_view(), name="events"),
    path("models/", api.RecommenderModelList.as_view(), name="model-list"),
    path("models/<int:version>/", api.RecommenderModelDetail.as_view(), name="model-detail"),
    path("training-runs/", api.TrainingRunList.as_view(), name="trainingrun-list"),
    path("training-runs/<int:pk>/", api.TrainingRunDetail.as_view(), name="trainingrun-detail"),
]
