"""Signals other code can listen to."""

from django.dispatch import Signal

# Sent after a recommender version became the active one (kwargs: model).
model_activated = Signal()
