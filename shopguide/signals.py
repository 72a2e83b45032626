"""Signals other code can listen to."""

from django.dispatch import Signal

# Sent after a recommender version became the active one (kwargs: model).
model_activated = Signal()

# Sent after the serving product vectors changed: a whole rescore swapped in (kwargs: rescore)
# or one product was re-encoded (rescore=None).
vectors_replaced = Signal()
